import Foundation

/// One artifact the app can run: file names inside one folder (the artifact, its sidecar, its examples if any);
/// `folder` names that folder for the screen ("" for the benchmark's one folder).
public struct CatalogEntry {
    public let artifact: String
    public let sidecar: String
    public let examples: String?
    public var folder = ""
}

/// An entry read: its sidecar parsed, its examples decoded (nil without an examples file); `title` is what the screen
/// lists, unique among the app's models (`ModelCatalog.scan`).
public struct CatalogModel {
    public let entry: CatalogEntry
    public let sidecar: Sidecar
    public let examples: ExampleSet?
    public var title: String
}

/// A folder the app lists models from: its name for the screen and the names of its files.
public struct CatalogFolder {
    public let name: String
    public let files: [String]
    public init(name: String, files: [String]) { self.name = name; self.files = files }
}

/// Every model of the app's folders, each with a unique `title`, and what was skipped and why.
public struct CatalogScan {
    public let models: [CatalogModel]
    public let skipped: [String]
    public var titles: [String] { models.map { $0.title } }

    public func byTitle(_ title: String) -> CatalogModel? { models.first { $0.title == title } }

    /// What the screen says about the scan: nothing, or why there is no model, then what was skipped.
    public func summary(hint: String) -> String {
        ((models.isEmpty ? ["no models: \(hint)"] : []) + skipped).joined(separator: "\n")
    }
}

/// Adding a model is dropping files: every `.mlpackage` (or Xcode's compiled `.mlmodelc`) with its sidecar
/// `{stem}.json` in a folder listing is a model; its examples are `{stem}.examples.json` or the name the sidecar
/// gives. Decided from names alone, so XCTest covers what the app lists.
public enum ModelCatalog {
    /// The contract's formats the iOS app runs (`ios` in emo/contract/vocabulary.json), then Xcode's compiled form.
    public static let suffixes = Vocabulary.formats.filter { $0.ios }.map { $0.suffix } + [".mlmodelc"]

    public static func discover(_ names: [String], folder: String = "") -> (entries: [CatalogEntry], skipped: [String]) {
        let present = Set(names)
        var entries: [CatalogEntry] = [], skipped: [String] = []
        for name in names.sorted() where !name.hasPrefix(".") && suffixes.contains(where: { name.hasSuffix($0) }) {
            let stem = String(name[..<name.lastIndex(of: ".")!])
            guard present.contains("\(stem).json") else {
                skipped.append("\(name): no sidecar \(stem).json next to it; copy emo-export's whole output")
                continue
            }
            let examples = "\(stem).examples.json"
            entries.append(CatalogEntry(artifact: name, sidecar: "\(stem).json", examples: present.contains(examples) ? examples : nil,
                                        folder: folder))
        }
        return (entries, skipped)
    }

    /// Every model of `folders`, read through `read` (folder, file name -> bytes). An artifact name found in more than
    /// one folder is listed as "name (folder)", so that each copy can be chosen (and SwiftUI gets unique ids) and is
    /// opened with its own sidecar; a model that cannot be read is skipped with the reason.
    public static func scan(_ folders: [CatalogFolder], read: (CatalogFolder, String) throws -> Data) -> CatalogScan {
        var models: [CatalogModel] = [], skipped: [String] = []
        for folder in folders {
            let listing = discover(folder.files, folder: folder.name)
            skipped += listing.skipped
            for entry in listing.entries {
                do {
                    models.append(try open(entry, names: folder.files) { try read(folder, $0) })
                } catch {
                    skipped.append("\(entry.artifact): \(Benchmark.reason(error))")
                }
            }
        }
        var copies: [String: Int] = [:]
        for m in models { copies[m.entry.artifact, default: 0] += 1 }
        for i in models.indices where copies[models[i].entry.artifact]! > 1 {
            models[i].title = "\(models[i].entry.artifact) (\(models[i].entry.folder))"
        }
        return CatalogScan(models: models, skipped: skipped)
    }

    public static func find(_ artifact: String, in names: [String]) throws -> CatalogEntry {
        guard names.contains(artifact) else { throw ModelContractError("no \(artifact) in Documents/emo-bench; copy it in first") }
        let listing = discover(names)
        guard let entry = listing.entries.first(where: { $0.artifact == artifact }) else {
            throw ModelContractError(listing.skipped.first { $0.hasPrefix("\(artifact):") } ?? "no \(artifact)")
        }
        return entry
    }

    /// Read an entry's sidecar and examples. An examples file made for another artifact (its `artifact` is not the
    /// sidecar's `file`: a file left by an earlier run, or copied beside the wrong model) is refused, never used to
    /// judge this one.
    public static func open(_ entry: CatalogEntry, names: [String], read: (String) throws -> Data) throws -> CatalogModel {
        let sidecar = try Sidecar.parse(try read(entry.sidecar), where: entry.sidecar)
        let named = sidecar.examplesFile.flatMap { names.contains($0) ? $0 : nil }
        var examples: ExampleSet?
        if let name = entry.examples ?? named {
            let set = try ExampleSet.parse(try read(name), where: name)
            guard set.artifact.isEmpty || set.artifact == sidecar.file else {
                throw ModelContractError("\(name) holds the examples of \(BoundedJSON.shown(.string(set.artifact))) but \(entry.sidecar) describes \(BoundedJSON.shown(.string(sidecar.file))); copy the artifact's own examples file (emo-export writes it beside the artifact)")
            }
            guard set.examples[0].input.count == sidecar.inputSize else {
                throw ModelContractError("\(name) holds inputs of \(set.examples[0].input.count) values, \(entry.sidecar) says \(sidecar.inputSize); re-export the artifact")
            }
            guard set.examples[0].output.count == sidecar.numClasses else {
                throw ModelContractError("\(name) holds outputs of \(set.examples[0].output.count) values, \(entry.sidecar) says \(sidecar.numClasses) classes; re-export the artifact")
            }
            examples = set
        }
        return CatalogModel(entry: entry, sidecar: sidecar, examples: examples, title: entry.artifact)
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

/// A session just opened, and how long opening took (`load_ms`; a `.mlpackage` is compiled as part of it).
public struct LoadedModel {
    public let session: ModelSession
    public let plan: LoadPlan
    public let loadMs: Double
}

/// What the first predictions say: the self-test on the bundled examples (or one neutral input without them), the
/// first prediction timed, Core ML's report and, from it, what ran.
public struct Probe {
    public let inputs: [[Float]]
    public let firstInferenceMs: Double
    public let parity: Agreement?
    public let engine: EngineReport
    public let accelerator: AcceleratorReport
}

/// A session ready for the screen: opened and probed; `ran` is the line the screen shows after every result.
public struct OpenedModel {
    public let session: ModelSession
    public let probe: Probe
    public var ran: String { probe.accelerator.summary() }
}

/// The headless benchmark (`ios_demo/BENCHMARK_MODE.md`), start to result: parse the request, find the model, load it
/// (timed; a `.mlpackage` is compiled as part of loading), probe it (the self-test on the bundled examples, the first
/// prediction timed as `first_inference_ms`, then what ran), warm up, time the iterations, assemble the result.
/// Any failure becomes a result with `status` "failed: <reason>" and every field known by then. The demo screen opens
/// its models with the same `load` and `probe` (`openAndProbe`), so what it says ran is what a benchmark reports.
public enum Benchmark {
    /// The result schema's bound on `status`.
    static let maxStatus = 2000

    public static func run(_ args: [String: String], context: BenchmarkContext) -> AppBenchResult {
        let clock = context.clock
        let partial = BenchmarkRequest.partial(args)
        var result = AppBenchResult(artifact: BenchmarkRequest.artifactOf(args), runtime: "none", runtimeVersion: nil,
                                    request: partial, accelerator: .none((partial["accelerator"] ?? nil) as? String),
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
            let loaded = try load(model, path: context.folder.appendingPathComponent(request.model).path,
                                  computeUnits: request.computeUnits, loader: context.loader, clock: clock)
            result.loadMs = loaded.loadMs
            let probe = try self.probe(model, loaded, clock: clock)
            result.firstInferenceMs = probe.firstInferenceMs
            result.parity = probe.parity
            result.runtimeVersion = probe.engine.runtimeVersion
            result.accelerator = probe.accelerator
            let input = probe.inputs[0]
            for _ in 0..<request.warmup { _ = try loaded.session.run(input) }
            var latencies: [Double] = []
            for _ in 0..<request.iterations {
                let t = clock.nanos()
                _ = try loaded.session.run(input)
                latencies.append(millis(clock.nanos() - t))
            }
            result.latenciesMs = latencies
        } catch {
            result.status = "failed: " + BenchmarkRequest.bounded(reason(error), maxStatus - "failed: ".count)
            result.latenciesMs = []
        }
        result.peakMemoryMb = context.peakMemoryMb()
        return result
    }

    /// Plan `model` (the file at `path`) on `computeUnits` and load it; the loading (and compiling) is timed.
    public static func load(_ model: CatalogModel, path: String, computeUnits: String, loader: EngineLoader,
                            clock: Clock) throws -> LoadedModel {
        let plan = try ComputeUnits.plan(path: path, sidecar: model.sidecar, computeUnits: computeUnits)
        let start = clock.nanos()
        let session = try ModelSession(sidecar: model.sidecar, engine: try loader.load(plan))
        return LoadedModel(session: session, plan: plan, loadMs: millis(clock.nanos() - start))
    }

    /// The self-test on the bundled examples (one neutral input without them; the first prediction timed), then
    /// Core ML's report and what ran.
    public static func probe(_ model: CatalogModel, _ loaded: LoadedModel, clock: Clock) throws -> Probe {
        let inputs = model.examples?.examples.map { $0.input } ?? [neutralInput(model.sidecar)]
        var outputs: [[Float]] = [], first = 0.0
        for input in inputs {
            let t = clock.nanos()
            outputs.append(try loaded.session.run(input))
            if outputs.count == 1 { first = millis(clock.nanos() - t) }
        }
        let report = loaded.session.engine.report()
        return Probe(inputs: inputs, firstInferenceMs: first, parity: model.examples?.agreement(outputs), engine: report,
                     accelerator: AcceleratorReport.coreML(computeUnits: loaded.plan.computeUnits, report: report))
    }

    /// For the screen: `load` and `probe`; a session whose probe fails is dropped, never kept.
    public static func openAndProbe(_ model: CatalogModel, path: String, computeUnits: String, loader: EngineLoader,
                                    clock: Clock) throws -> OpenedModel {
        let loaded = try load(model, path: path, computeUnits: computeUnits, loader: loader, clock: clock)
        return OpenedModel(session: loaded.session, probe: try probe(model, loaded, clock: clock))
    }

    /// A constant mid-grey input for a model without examples (pixel 128 for an image input, 0.5 otherwise).
    public static func neutralInput(_ sidecar: Sidecar) -> [Float] {
        [Float](repeating: sidecar.layout == "image" ? 128 : 0.5, count: sidecar.inputSize)
    }

    /// The files of `Documents/emo-bench` that are not this request's (its artifact, sidecar and examples): what
    /// earlier runs left there, which the app deletes before it reads the folder (a `.mlpackage` is megabytes, and an
    /// old examples file must never meet a new artifact). Nothing when the request does not parse.
    public static func leftovers(_ args: [String: String], listing: [String]) -> [String] {
        guard let request = try? BenchmarkRequest.parse(args), let dot = request.model.lastIndex(of: ".") else { return [] }
        let stem = String(request.model[..<dot])
        let own: Set<String> = [request.model, "\(stem).json", "\(stem).examples.json"]
        return listing.filter { !own.contains($0) }.sorted()
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
    /// The status line of a model just opened: its name, what ran, and its self-test verdict when it has examples.
    public static func opened(_ title: String, _ opened: OpenedModel) -> String {
        "\(title) on \(opened.ran)" + (opened.probe.parity.map { "; self-test \($0.status)" } ?? "")
    }

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
