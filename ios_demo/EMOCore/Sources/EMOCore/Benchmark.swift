import Foundation

/// One artifact the app can run: file names inside one folder (the artifact, its sidecar, its examples if any).
public struct CatalogEntry {
    public let artifact: String
    public let sidecar: String
    public let examples: String?
}

/// An entry read: its sidecar parsed, its examples decoded (nil without an examples file).
public struct CatalogModel {
    public let entry: CatalogEntry
    public let sidecar: Sidecar
    public let examples: ExampleSet?
}

/// Adding a model is dropping files: every `.mlpackage` (or Xcode's compiled `.mlmodelc`) with its sidecar
/// `{stem}.json` in a folder listing is a model; its examples are `{stem}.examples.json` or the name the sidecar
/// gives. Decided from names alone, so XCTest covers what the app lists.
public enum ModelCatalog {
    /// The contract's formats the iOS app runs (`ios` in emo/contract/vocabulary.json), then Xcode's compiled form.
    public static let suffixes = Vocabulary.formats.filter { $0.ios }.map { $0.suffix } + [".mlmodelc"]

    public static func discover(_ names: [String]) -> (entries: [CatalogEntry], skipped: [String]) {
        let present = Set(names)
        var entries: [CatalogEntry] = [], skipped: [String] = []
        for name in names.sorted() where !name.hasPrefix(".") && suffixes.contains(where: { name.hasSuffix($0) }) {
            let stem = String(name[..<name.lastIndex(of: ".")!])
            guard present.contains("\(stem).json") else {
                skipped.append("\(name): no sidecar \(stem).json next to it; copy emo-export's whole output")
                continue
            }
            let examples = "\(stem).examples.json"
            entries.append(CatalogEntry(artifact: name, sidecar: "\(stem).json", examples: present.contains(examples) ? examples : nil))
        }
        return (entries, skipped)
    }

    public static func find(_ artifact: String, in names: [String]) throws -> CatalogEntry {
        guard names.contains(artifact) else { throw ModelContractError("no \(artifact) in Documents/emo-bench; copy it in first") }
        let listing = discover(names)
        guard let entry = listing.entries.first(where: { $0.artifact == artifact }) else {
            throw ModelContractError(listing.skipped.first { $0.hasPrefix("\(artifact):") } ?? "no \(artifact)")
        }
        return entry
    }

    public static func open(_ entry: CatalogEntry, names: [String], read: (String) throws -> Data) throws -> CatalogModel {
        let sidecar = try Sidecar.parse(try read(entry.sidecar), where: entry.sidecar)
        let named = sidecar.examplesFile.flatMap { names.contains($0) ? $0 : nil }
        var examples: ExampleSet?
        if let name = entry.examples ?? named {
            let set = try ExampleSet.parse(try read(name), where: name)
            guard set.examples[0].input.count == sidecar.inputSize else {
                throw ModelContractError("\(name) holds inputs of \(set.examples[0].input.count) values, \(entry.sidecar) says \(sidecar.inputSize); re-export the artifact")
            }
            guard set.examples[0].output.count == sidecar.numClasses else {
                throw ModelContractError("\(name) holds outputs of \(set.examples[0].output.count) values, \(entry.sidecar) says \(sidecar.numClasses) classes; re-export the artifact")
            }
            examples = set
        }
        return CatalogModel(entry: entry, sidecar: sidecar, examples: examples)
    }
}

/// Everything the benchmark needs from the platform, as values and closures (fakes in XCTest).
public struct BenchmarkContext {
    public let folder: URL
    public let listing: [String]
    public let read: (String) throws -> Data
    public let loader: EngineLoader
    public let clock: Clock
    public let peakMemoryMb: () -> Double?
    public let device: DeviceInfo
    public let appVersion: String

    public init(folder: URL, listing: [String], read: @escaping (String) throws -> Data, loader: EngineLoader, clock: Clock,
                peakMemoryMb: @escaping () -> Double?, device: DeviceInfo, appVersion: String) {
        self.folder = folder; self.listing = listing; self.read = read; self.loader = loader; self.clock = clock
        self.peakMemoryMb = peakMemoryMb; self.device = device; self.appVersion = appVersion
    }
}

/// The headless benchmark (`ios_demo/BENCHMARK_MODE.md`), start to result: parse the request, find the model, load it
/// (timed; a `.mlpackage` is compiled as part of loading), run the self-test on the bundled examples (the first
/// inference timed as `first_inference_ms`), ask Core ML what ran, warm up, time the iterations, assemble the result.
/// Any failure becomes a result with `status` "failed: <reason>" and every field known by then.
public enum Benchmark {
    public static func run(_ args: [String: String], context: BenchmarkContext) -> AppBenchResult {
        let clock = context.clock
        var result = AppBenchResult(artifact: args["-emoBenchmark"] ?? "?", runtime: "none", runtimeVersion: nil,
                                    request: BenchmarkRequest.partial(args), accelerator: .none(args["-emoBenchComputeUnits"]),
                                    inputType: "float32", outputType: "float32", loadMs: nil, firstInferenceMs: nil,
                                    latenciesMs: [], peakMemoryMb: nil, device: context.device, status: "ok",
                                    appVersion: context.appVersion, parity: nil)
        do {
            let request = try BenchmarkRequest.parse(args)
            result.request = ["accelerator": request.computeUnits, "threads": nil, "warmup": request.warmup,
                              "iterations": request.iterations]
            let model = try ModelCatalog.open(try ModelCatalog.find(request.model, in: context.listing),
                                              names: context.listing, read: context.read)
            result.runtime = "coreml"
            result.inputType = model.sidecar.layout == "image" ? "image" : "float32"
            result.outputType = model.sidecar.outputKind == "probabilities" ? "probabilities" : "float32"
            let plan = try ComputeUnits.plan(path: context.folder.appendingPathComponent(request.model).path,
                                             sidecar: model.sidecar, computeUnits: request.computeUnits)
            let start = clock.nanos()
            let session = try ModelSession(sidecar: model.sidecar, engine: try context.loader.load(plan))
            result.loadMs = millis(clock.nanos() - start)
            let inputs = model.examples?.examples.map { $0.input } ?? [neutralInput(model.sidecar)]
            var outputs: [[Float]] = []
            for input in inputs {
                let t = clock.nanos()
                outputs.append(try session.run(input))
                if result.firstInferenceMs == nil { result.firstInferenceMs = millis(clock.nanos() - t) }
            }
            result.parity = model.examples?.agreement(outputs)
            let report = session.engine.report()
            result.runtimeVersion = report.runtimeVersion
            result.accelerator = AcceleratorReport.coreML(computeUnits: request.computeUnits, report: report)
            for _ in 0..<request.warmup { _ = try session.run(inputs[0]) }
            var latencies: [Double] = []
            for _ in 0..<request.iterations {
                let t = clock.nanos()
                _ = try session.run(inputs[0])
                latencies.append(millis(clock.nanos() - t))
            }
            result.latenciesMs = latencies
        } catch {
            result.status = "failed: " + reason(error)
            result.latenciesMs = []
        }
        result.peakMemoryMb = context.peakMemoryMb()
        return result
    }

    /// A constant mid-grey input when there are no examples (pixel 128 for an image input, 0.5 otherwise).
    static func neutralInput(_ sidecar: Sidecar) -> [Float] {
        [Float](repeating: sidecar.layout == "image" ? 128 : 0.5, count: sidecar.inputSize)
    }

    /// An error as one line.
    public static func reason(_ error: Error) -> String {
        let text = String(describing: error).split(separator: "\n").first.map(String.init) ?? ""
        return text.isEmpty ? String(describing: type(of: error)) : text
    }

    static func millis(_ nanos: UInt64) -> Double { Double(nanos) / 1e6 }
}

/// What the screen shows, decided here so the views only display strings.
public enum Texts {
    public static func predictions(_ predictions: [Prediction], millis: Double, ran: String) -> String {
        predictions.map { $0.label + String(repeating: " ", count: max(0, 28 - $0.label.count)) + String(format: " %.3f", $0.probability) }
            .joined(separator: "\n") + String(format: "\n%.2f ms on ", millis) + ran
    }

    public static func selfTest(_ agreement: Agreement?, artifact: String, ran: String) -> String {
        guard let a = agreement else { return "no examples file next to \(artifact): re-export it with emo-export" }
        return "self-test on \(a.numExamples) examples (\(ran)): \(a.status)\n" + String(
            format: "max |diff| %.2e, cosine %.6f, top-1 %.0f%%, top-5 %.0f%%", a.maxAbsDiff, a.cosine,
            a.top1Agreement * 100, a.top5Agreement * 100)
    }
}
