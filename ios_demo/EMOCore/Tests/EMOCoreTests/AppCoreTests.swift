import Foundation
import XCTest
@testable import EMOCore

/// The app's decisions without a phone: the launch arguments, the catalog, the run loop and its result file, the
/// classifier's keys and the accelerator report. Core ML is replaced by replay engines answering with PyTorch's
/// outputs from the bundled examples; `classifier-keys.json` holds the keys `emo.export.coreml.classifier_labels`
/// gives Core ML's ClassifierConfig for the real sidecar's labels (written by tests/test_ios_core.py).
final class AppCoreTests: XCTestCase {
    final class StepClock: Clock {
        var now: UInt64 = 0
        func nanos() -> UInt64 { now += 2_000_000; return now }
    }

    /// Answers the examples' inputs with their outputs (as a tensor, or as a classifier's dictionary keyed by `keys`).
    final class ReplayEngine: Engine {
        let table: [[Float]: [Float]]
        let keys: [String]?
        let nodes: [String: Int]?
        var runs = 0
        init(_ table: [[Float]: [Float]], keys: [String]? = nil, nodes: [String: Int]? = nil) {
            self.table = table; self.keys = keys; self.nodes = nodes
        }
        func run(_ input: [Float]) throws -> EngineOutput {
            runs += 1
            guard let output = table[input] else { throw ModelContractError("unexpected input") }
            guard let keys = keys else { return .values(output) }
            var dictionary: [String: Double] = [:]
            for (i, key) in keys.enumerated() { dictionary[key] = Double(output[i]) }
            return .probabilities(dictionary)
        }
        func report() -> EngineReport { EngineReport(nodes: nodes, detail: nil, runtimeVersion: "iOS 18.1") }
    }

    struct FixedLoader: EngineLoader {
        let engine: Engine
        func load(_ plan: LoadPlan) throws -> Engine { engine }
    }

    let iphone = DeviceInfo.ios(machine: "iPhone15,2", version: OperatingSystemVersion(majorVersion: 18, minorVersion: 1, patchVersion: 0),
                                abi: "arm64")

    func dataRoot() throws -> URL {
        guard let path = ProcessInfo.processInfo.environment["EMO_TESTDATA"] else {
            throw ModelContractError("EMO_TESTDATA=DIR is required (tests/test_ios_core.py sets it)")
        }
        return URL(fileURLWithPath: path)
    }

    /// The first export's files under emo-bench's fixed names (model.mlpackage, model.json, model.examples.json).
    func benchFiles() throws -> [String: Data] {
        let artifacts = try dataRoot().appendingPathComponent("artifacts")
        let fm = FileManager.default
        for dir in try fm.contentsOfDirectory(at: artifacts, includingPropertiesForKeys: nil).sorted(by: { $0.path < $1.path }) {
            let names = try fm.contentsOfDirectory(atPath: dir.path)
            guard let sidecar = names.sorted().first(where: { $0.hasSuffix(".json") && !$0.hasSuffix(".examples.json") }) else { continue }
            let stem = String(sidecar.dropLast(5))
            return ["model.mlpackage": Data(), "model.json": try Data(contentsOf: dir.appendingPathComponent(sidecar)),
                    "model.examples.json": try Data(contentsOf: dir.appendingPathComponent("\(stem).examples.json"))]
        }
        throw ModelContractError("no export under \(artifacts.path)")
    }

    func context(_ files: [String: Data], _ engine: Engine) -> BenchmarkContext {
        BenchmarkContext(folder: URL(fileURLWithPath: "/var/mobile/Documents/emo-bench"), listing: Array(files.keys),
                         read: { name in
                             guard let data = files[name] else { throw ModelContractError("no \(name)") }
                             return data
                         }, loader: FixedLoader(engine: engine), clock: StepClock(), peakMemoryMb: { 38.5 },
                         device: iphone, appVersion: "0.2.0")
    }

    func replay(_ set: ExampleSet, batch: Int, keys: [String]? = nil, nodes: [String: Int]? = nil) -> ReplayEngine {
        var table: [[Float]: [Float]] = [:]
        for e in set.examples {
            table[(0..<max(batch, 1)).flatMap { _ in e.input }] = keys == nil ? (0..<max(batch, 1)).flatMap { _ in e.output } : e.output
        }
        return ReplayEngine(table, keys: keys, nodes: nodes)
    }

    func testBenchmarkEndToEndWritesTheSharedSchema() throws {
        let files = try benchFiles()
        let sidecar = try Sidecar.parse(files["model.json"]!)
        let set = try ExampleSet.parse(files["model.examples.json"]!)
        let engine = replay(set, batch: sidecar.batch, nodes: ["ane": 310, "cpu": 4])
        let argv = ["/app", "-emoBenchmark", "model.mlpackage", "-emoBenchIterations", "5", "-emoBenchWarmup", "3",
                    "-emoBenchComputeUnits", "CPU_AND_NE", "-emoBenchOutput", "result-abc.json"]
        let args = try XCTUnwrap(BenchmarkRequest.arguments(argv))
        XCTAssertEqual(BenchmarkRequest.outputOf(args), "result-abc.json")
        let result = Benchmark.run(args, context: context(files, engine))
        XCTAssertEqual(result.status, "ok")
        XCTAssertEqual(engine.runs, 3 + 3 + 5)
        XCTAssertEqual(result.latenciesMs, [2, 2, 2, 2, 2])
        XCTAssertEqual(result.loadMs, 2)
        XCTAssertEqual(result.firstInferenceMs, 2)
        XCTAssertEqual(result.parity?.status, "passed")
        XCTAssertEqual(result.accelerator.used, ["ane", "cpu"])
        XCTAssertEqual(result.accelerator.summary(), "ane 310 + cpu 4 ops")
        XCTAssertEqual(result.accelerator.source, AcceleratorReport.sourceComputePlan)
        let out = try dataRoot().appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try result.write(to: out.appendingPathComponent("app-bench-ios-ok.json"))
        XCTAssertNil(BenchmarkRequest.arguments(["/app", "-AppleLanguages", "(en)"]))  // no -emoBenchmark: the UI starts
    }

    func testFailuresAreResultsWithTheirReason() throws {
        let files = try benchFiles()
        let set = try ExampleSet.parse(files["model.examples.json"]!)
        func run(_ args: [String: String]) -> AppBenchResult { Benchmark.run(args, context: context(files, replay(set, batch: 1))) }
        let badUnits = run(["-emoBenchmark": "model.mlpackage", "-emoBenchComputeUnits": "NPU"])
        XCTAssertEqual(badUnits.status, "failed: -emoBenchComputeUnits must be one of CPU_ONLY, CPU_AND_GPU, CPU_AND_NE, ALL, not 'NPU'")
        XCTAssertEqual(badUnits.runtime, "none")
        XCTAssertEqual(run(["-emoBenchmark": "../x.mlpackage"]).status,
                       "failed: -emoBenchmark must be a file name inside Documents/emo-bench, not '../x.mlpackage'")
        XCTAssertEqual(run(["-emoBenchmark": "other.mlpackage"]).status, "failed: no other.mlpackage in Documents/emo-bench; copy it in first")
        XCTAssertEqual(run(["-emoBenchmark": "model.mlpackage", "-emoBenchIterations": "0"]).status,
                       "failed: -emoBenchIterations must be an integer in [1, 100000], not '0'")
        XCTAssertEqual(run(["-emoBenchmark": "m.onnx"]).status, "failed: m.onnx is not a Core ML artifact (.mlpackage, .mlmodelc); export --format coreml")
        XCTAssertEqual(BenchmarkRequest.outputOf(["-emoBenchOutput": "../../x.json"]), "result.json")
        var noSidecar = files
        noSidecar.removeValue(forKey: "model.json")
        let failed = Benchmark.run(["-emoBenchmark": "model.mlpackage"], context: context(noSidecar, replay(set, batch: 1)))
        XCTAssertEqual(failed.status, "failed: model.mlpackage: no sidecar model.json next to it; copy emo-export's whole output")
        let out = try dataRoot().appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try failed.write(to: out.appendingPathComponent("app-bench-ios-failed.json"))
    }

    /// Core ML's classifier dictionary is keyed by the exporter's unique keys: "missile" and "missile (744)" are two
    /// classes. Reading by raw label (the old app) gave both the first one's probability.
    func testClassifierKeysAreTheExportersAndMapBackToClassOrder() throws {
        let files = try benchFiles()
        let sidecar = try Sidecar.parse(files["model.json"]!)
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: try dataRoot().appendingPathComponent("classifier-keys.json"))) as! [String]
        let keys = ClassifierKeys.keys(sidecar)
        XCTAssertEqual(keys, expected)
        XCTAssertEqual(Set(keys).count, keys.count)
        let duplicated = try XCTUnwrap(keys.firstIndex { $0.hasSuffix(" (\(keys.firstIndex(of: $0)!))") })
        XCTAssertTrue(keys[duplicated].hasPrefix(sidecar.labels[duplicated] + " ("))
        var dictionary: [String: Double] = [:]
        for (i, key) in keys.enumerated() { dictionary[key] = Double(i) }
        XCTAssertEqual(try ClassifierKeys.probabilities(dictionary, keys: keys), (0..<keys.count).map { Float($0) })
        dictionary.removeValue(forKey: keys[duplicated])
        XCTAssertThrowsError(try ClassifierKeys.probabilities(dictionary, keys: keys)) { error in
            XCTAssertTrue(String(describing: error).contains("has no class '\(keys[duplicated])'"))
        }
        // through a session: probabilities come back in class order, whatever the dictionary's order
        let set = try ExampleSet.parse(files["model.examples.json"]!)
        let session = try ModelSession(sidecar: sidecar, engine: replay(set, batch: sidecar.batch, keys: keys))
        XCTAssertEqual(try session.run(set.examples[0].input), set.examples[0].output)
    }

    func testImageInputBytesAndOutputSizeChecks() throws {
        let rgb: [Float] = [10, 20, 30, 40, 50, 60]  // 2x1 image: R plane, G plane, B plane
        XCTAssertEqual(try ImageTensor.bgra([10, 11, 20, 21, 30, 31], width: 2, height: 1, bytesPerRow: 12),
                       [30, 20, 10, 255, 31, 21, 11, 255, 0, 0, 0, 0])
        XCTAssertThrowsError(try ImageTensor.bgra(rgb.map { $0 + 0.5 }, width: 2, height: 1, bytesPerRow: 8))
        XCTAssertThrowsError(try ImageTensor.bgra(rgb, width: 3, height: 1, bytesPerRow: 12))
        XCTAssertEqual(ImageTensor.rgbaFromBGRA([1, 2, 3, 0, 4, 5, 6, 9]), [3, 2, 1, 255, 6, 5, 4, 255])
        let files = try benchFiles()
        let sidecar = try Sidecar.parse(files["model.json"]!)
        final class Short: Engine {
            func run(_ input: [Float]) throws -> EngineOutput { .values([Float](repeating: 0, count: 10)) }
            func report() -> EngineReport { EngineReport(nodes: nil, detail: nil, runtimeVersion: nil) }
        }
        XCTAssertThrowsError(try ModelSession(sidecar: sidecar, engine: Short()).run([Float](repeating: 0, count: sidecar.inputSize))) {
            XCTAssertEqual(String(describing: $0), "the model returned 10 values, its sidecar says 1 x 1000; re-export the artifact")
        }
    }

    func testCatalogDeviceAndReports() throws {
        let listing = ModelCatalog.discover(["b.mlmodelc", "b.json", "a.mlpackage", "a.json", "a.examples.json", "c.mlpackage", "x.tflite"])
        XCTAssertEqual(listing.entries.map { $0.artifact }, ["a.mlpackage", "b.mlmodelc"])
        XCTAssertEqual(listing.entries[0].examples, "a.examples.json")
        XCTAssertEqual(listing.skipped, ["c.mlpackage: no sidecar c.json next to it; copy emo-export's whole output"])
        XCTAssertEqual(iphone.os, "iOS 18.1")
        XCTAssertEqual(iphone.soc, "A16")
        let patch = DeviceInfo.ios(machine: "iPhone99,1", version: OperatingSystemVersion(majorVersion: 17, minorVersion: 4, patchVersion: 1),
                                   abi: "arm64")
        XCTAssertEqual(patch.os, "iOS 17.4.1")
        XCTAssertEqual(patch.soc, "?")
        let allowed = AcceleratorReport.coreML(computeUnits: "CPU_AND_GPU", report: EngineReport(nodes: nil, detail: nil, runtimeVersion: nil))
        XCTAssertEqual(allowed.used, ["cpu", "gpu"])
        XCTAssertEqual(allowed.summary(), "cpu+gpu (as allowed)")
        XCTAssertThrowsError(try ComputeUnits.plan(path: "/x", sidecar: try Sidecar.parse(try benchFiles()["model.json"]!), computeUnits: "GPU"))
    }

    /// A hand-made request: every value echoed in the result stays within app-bench.schema.json's bounds.
    func testRequestsOutsideTheBoundsStillGiveAResultThatFollowsTheSchema() throws {
        let files = try benchFiles()
        let set = try ExampleSet.parse(files["model.examples.json"]!)
        let args = ["-emoBenchmark": "", "-emoBenchComputeUnits": String(repeating: "x", count: 100),
                    "-emoBenchWarmup": "-1", "-emoBenchIterations": "0"]
        let failed = Benchmark.run(args, context: context(files, replay(set, batch: 1)))
        XCTAssertEqual(failed.status, "failed: -emoBenchmark must be a file name inside Documents/emo-bench, not ''")
        XCTAssertEqual(failed.artifact, "?")
        XCTAssertEqual(failed.request["accelerator"] as? String, String(repeating: "x", count: 64))
        XCTAssertEqual(failed.accelerator.requested, String(repeating: "x", count: 64))
        XCTAssertNil(failed.request["warmup"] ?? nil)
        XCTAssertNil(failed.request["iterations"] ?? nil)
        let out = try dataRoot().appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try failed.write(to: out.appendingPathComponent("app-bench-ios-failed-bounds.json"))
        let kept = BenchmarkRequest.partial(["-emoBenchWarmup": "0", "-emoBenchIterations": " 7"])
        XCTAssertEqual(kept["warmup"] as? Int, 0)
        XCTAssertEqual(kept["iterations"] as? Int, 7)
        let long = String(repeating: "m", count: 300) + ".mlpackage"
        XCTAssertEqual(BenchmarkRequest.artifactOf(["-emoBenchmark": long]).count, 255)
        XCTAssertTrue(Benchmark.run(["-emoBenchmark": long], context: context(files, replay(set, batch: 1))).status
            .hasPrefix("failed: -emoBenchmark must be a file name of at most 255 characters"))
        XCTAssertEqual(BenchmarkRequest.bounded(String(repeating: "\u{1F600}", count: 3), 2), String(repeating: "\u{1F600}", count: 2))
        XCTAssertEqual(try BenchmarkRequest.parse(["-emoBenchmark": "m.mlpackage"]).computeUnits, BenchmarkRequest.defaultComputeUnits)
    }

    /// emo-bench copies fresh names; an examples file of another artifact must never judge this one.
    func testAnExamplesFileOfAnotherArtifactIsRefused() throws {
        var files = try benchFiles()
        let sidecar = try Sidecar.parse(files["model.json"]!)
        let set = try ExampleSet.parse(files["model.examples.json"]!)
        XCTAssertEqual(set.artifact, sidecar.file)  // the exporter writes the sidecar's file
        var document = try JSONSerialization.jsonObject(with: files["model.examples.json"]!) as! [String: Any]
        document["artifact"] = "emo_2m_coreml_fp16.mlpackage"
        files["model.examples.json"] = try JSONSerialization.data(withJSONObject: document)
        let engine = replay(set, batch: sidecar.batch)
        let result = Benchmark.run(["-emoBenchmark": "model.mlpackage"], context: context(files, engine))
        XCTAssertEqual(result.status, "failed: model.examples.json holds the examples of \"emo_2m_coreml_fp16.mlpackage\" but " +
                       "model.json describes \"\(sidecar.file)\"; copy the artifact's own examples file (emo-export writes it beside the artifact)")
        XCTAssertEqual(engine.runs, 0)
    }

    /// Files of earlier runs are deleted before a run reads the folder; this run's three files are kept.
    func testLeftoversOfEarlierRunsAreListedForDeletion() {
        let listing = ["model-new.mlpackage", "model-new.json", "model-new.examples.json", "model-old.mlpackage",
                       "model-old.json", "model-old.examples.json", "result-old.json"]
        XCTAssertEqual(Benchmark.leftovers(["-emoBenchmark": "model-new.mlpackage"], listing: listing),
                       ["model-old.examples.json", "model-old.json", "model-old.mlpackage", "result-old.json"])
        XCTAssertEqual(Benchmark.leftovers(["-emoBenchmark": "../x.mlpackage"], listing: listing), [])
    }

    func testTheScanListsEveryCopyOfAnArtifactWithItsFolder() throws {
        let files = try benchFiles()
        let own = ["model.mlpackage", "model.json", "model.examples.json"]
        let scan = ModelCatalog.scan([CatalogFolder(name: "bundle", files: own),
                                      CatalogFolder(name: "Documents", files: own + ["x.mlpackage", "x.json"])]) { _, name in
            guard let data = files[name] else { return Data("{".utf8) }
            return data
        }
        XCTAssertEqual(scan.titles, ["model.mlpackage (bundle)", "model.mlpackage (Documents)"])
        XCTAssertEqual(scan.byTitle("model.mlpackage (Documents)")?.entry.folder, "Documents")
        XCTAssertEqual(scan.skipped.count, 1)
        XCTAssertTrue(scan.skipped[0].hasPrefix("x.mlpackage: "), scan.skipped[0])
        XCTAssertEqual(ModelCatalog.scan([CatalogFolder(name: "bundle", files: own)]) { files[$1]! }.titles, ["model.mlpackage"])
        XCTAssertEqual(ModelCatalog.scan([]) { _, _ in Data() }.summary(hint: "add some"), "no models: add some")
    }

    func testTheScreenOpensAModelThroughTheBenchmarksProbe() throws {
        let files = try benchFiles()
        let model = try ModelCatalog.open(try ModelCatalog.find("model.mlpackage", in: Array(files.keys)), names: Array(files.keys)) { files[$0]! }
        let engine = replay(model.examples!, batch: model.sidecar.batch, nodes: ["ane": 310, "cpu": 4])
        let opened = try Benchmark.openAndProbe(model, path: "/x/model.mlpackage", computeUnits: BenchmarkRequest.defaultComputeUnits,
                                                loader: FixedLoader(engine: engine), clock: StepClock())
        XCTAssertEqual(engine.runs, model.examples!.examples.count)  // the self-test's examples are the probe
        XCTAssertEqual(Texts.opened("model.mlpackage", opened), "model.mlpackage on ane 310 + cpu 4 ops; self-test passed")
        XCTAssertThrowsError(try Benchmark.openAndProbe(model, path: "/x", computeUnits: "ALL",
                                                        loader: FixedLoader(engine: ReplayEngine([:])), clock: StepClock()))
        let bare = CatalogModel(entry: model.entry, sidecar: model.sidecar, examples: nil, title: "bare")
        let neutral = Benchmark.neutralInput(model.sidecar)
        let once = ReplayEngine([(0..<max(model.sidecar.batch, 1)).flatMap { _ in neutral }:
                                    [Float](repeating: 0, count: model.sidecar.numClasses * max(model.sidecar.batch, 1))])
        let probed = try Benchmark.openAndProbe(bare, path: "/x", computeUnits: "CPU_ONLY", loader: FixedLoader(engine: once),
                                                clock: StepClock())
        XCTAssertNil(probed.probe.parity)
        XCTAssertEqual(Texts.opened("bare", probed), "bare on cpu (as allowed)")
    }

    func testPlatformFactsAreReadByTheCore() {
        XCTAssertEqual(ClassifierKeys.text(AnyHashable(Int64(744))), "744")
        XCTAssertEqual(ClassifierKeys.text(AnyHashable("missile (744)")), "missile (744)")
        XCTAssertEqual(DeviceInfo.osName(OperatingSystemVersion(majorVersion: 18, minorVersion: 1, patchVersion: 0)), "iOS 18.1")
        XCTAssertTrue(Preprocessor.decodeSize(width: 4032, height: 3024) == (4032, 3024))  // 12 MP: decoded whole
        let (w, h) = Preprocessor.decodeSize(width: 8064, height: 6048)  // 48 MP: scaled to the bound, aspect kept
        XCTAssertTrue(w * h <= Preprocessor.maxDecodePixels && w * h > Preprocessor.maxDecodePixels * 99 / 100, "\(w)x\(h)")
        XCTAssertEqual(Double(w) / Double(h), 4.0 / 3.0, accuracy: 0.01)
        XCTAssertTrue(Preprocessor.decodeSize(width: 8160, height: 6144) == (4720, 3554))  // as the Kotlin core
    }

    /// EXIF orientations as Pillow's exif_transpose applies them (the expected pixels are Pillow's, written by
    /// tests/test_ios_core.py), from RGBA rows with padding.
    func testOrientationIsPillowsExifTranspose() throws {
        let doc = try JSONSerialization.jsonObject(
            with: Data(contentsOf: try dataRoot().appendingPathComponent("orientations.json"))) as! [String: Any]
        let w = doc["width"] as! Int, h = doc["height"] as! Int, rgb = (doc["rgb"] as! [Int]).map { UInt8($0) }
        let row = w * 4 + 12
        var rgba = [UInt8](repeating: 77, count: row * h)
        for i in 0..<(w * h) { for c in 0..<3 { rgba[i / w * row + i % w * 4 + c] = rgb[i * 3 + c] }; rgba[i / w * row + i % w * 4 + 3] = 255 }
        let expected = doc["expected"] as! [String: [String: Any]]
        XCTAssertEqual(expected.count, 9)
        for (key, value) in expected {
            let upright = Orientation.upright(rgba, width: w, height: h, bytesPerRow: row, orientation: Int(key)!)
            XCTAssertEqual(upright.width, value["width"] as? Int, "orientation \(key)")
            XCTAssertEqual(upright.height, value["height"] as? Int, "orientation \(key)")
            let want = (value["rgb"] as! [Int]).map { UInt8($0) }
            let got = (0..<(upright.width * upright.height)).flatMap { upright.bytes[$0 * 4..<$0 * 4 + 3] }
            XCTAssertEqual(got, want, "orientation \(key)")
        }
    }
}
