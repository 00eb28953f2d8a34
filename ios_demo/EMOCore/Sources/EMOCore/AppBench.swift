import Foundation

/// A benchmark request that cannot be run; the message names the launch argument and the fix.
public struct RequestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The headless benchmark's request (`ios_demo/BENCHMARK_MODE.md`) from the process's launch arguments:
/// `-emoBenchmark model.mlpackage -emoBenchIterations N -emoBenchWarmup W -emoBenchComputeUnits U
/// -emoBenchOutput result-TOKEN.json`. Names are plain file names inside `Documents/emo-bench`.
public struct BenchmarkRequest {
    public let model: String
    public let computeUnits: String
    public let warmup: Int
    public let iterations: Int
    public let output: String

    public static let folder = "emo-bench"  // inside Documents
    public static let defaultOutput = "result.json"
    /// The default of a request, and of the demo screen's sessions.
    public static let defaultComputeUnits = "ALL"
    static let keys = ["-emoBenchmark", "-emoBenchIterations", "-emoBenchWarmup", "-emoBenchComputeUnits", "-emoBenchOutput"]
    static let warmupRange = 0...10000, iterationsRange = 1...100000
    /// The result schema's bounds on the strings a failed request echoes (`accelerator`, `artifact`).
    static let maxAccelerator = 64, maxArtifact = 255

    /// The `-emoBench...` arguments as a map (nil without `-emoBenchmark`: the app starts its UI).
    public static func arguments(_ argv: [String]) -> [String: String]? {
        var found: [String: String] = [:]
        var i = 0
        while i < argv.count {
            if argv[i].hasPrefix("-emoBench"), i + 1 < argv.count {
                found[argv[i]] = argv[i + 1]
                i += 2
            } else {
                i += 1
            }
        }
        return found["-emoBenchmark"] == nil ? nil : found
    }

    public static func parse(_ args: [String: String]) throws -> BenchmarkRequest {
        let unknown = args.keys.filter { !keys.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw RequestError("unknown launch argument \(unknown.joined(separator: ", ")); the app reads \(keys.joined(separator: ", "))")
        }
        guard let model = args["-emoBenchmark"] else { throw RequestError("the launch argument -emoBenchmark is missing") }
        try fileName(model, "-emoBenchmark")
        guard ModelCatalog.suffixes.contains(where: { model.hasSuffix($0) }) else {
            throw RequestError("\(model) is not a Core ML artifact (.mlpackage, .mlmodelc); export --format coreml")
        }
        let units = args["-emoBenchComputeUnits"] ?? defaultComputeUnits
        guard ComputeUnits.names.contains(units) else {
            throw RequestError("-emoBenchComputeUnits must be one of \(ComputeUnits.names.joined(separator: ", ")), not '\(units)'")
        }
        return BenchmarkRequest(model: model, computeUnits: units,
                                warmup: try integer(args, "-emoBenchWarmup", 5, warmupRange),
                                iterations: try integer(args, "-emoBenchIterations", 50, iterationsRange), output: outputOf(args))
    }

    /// The result file's name: the argument when it is a plain `.json` name, else `result.json`, so that even a
    /// request that cannot be parsed gets its failure written.
    public static func outputOf(_ args: [String: String]) -> String {
        guard let name = args["-emoBenchOutput"], (try? fileName(name, "-emoBenchOutput")) != nil, name.hasSuffix(".json") else {
            return defaultOutput
        }
        return name
    }

    /// What could be read of the request, for the `request` object of a failed result: a number only when `parse`
    /// would take it and a string cut to the schema's length, so that a hand-made request (`-emoBenchWarmup -1`)
    /// still gets a valid result file that says why it failed, not a schema error in emo-bench.
    public static func partial(_ args: [String: String]) -> [String: Any?] {
        ["accelerator": args["-emoBenchComputeUnits"].map { bounded($0, maxAccelerator) }, "threads": nil,
         "warmup": within(args["-emoBenchWarmup"], warmupRange), "iterations": within(args["-emoBenchIterations"], iterationsRange)]
    }

    /// The result's `artifact` for a request that may not parse: the argument, cut to the schema's length, or "?".
    public static func artifactOf(_ args: [String: String]) -> String {
        guard let model = args["-emoBenchmark"], !model.isEmpty else { return "?" }
        return bounded(model, maxArtifact)
    }

    /// `text` cut to `max` code points (the schema counts code points, as Python's len).
    public static func bounded(_ text: String, _ max: Int) -> String {
        text.unicodeScalars.count <= max ? text : String(String.UnicodeScalarView(text.unicodeScalars.prefix(max)))
    }

    static func within(_ text: String?, _ range: ClosedRange<Int>) -> Int? {
        guard let text = text, let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else { return nil }
        return value
    }

    static func fileName(_ name: String, _ key: String) throws {
        if name.isEmpty || name.hasPrefix(".") || name.contains("/") || name.contains("\\") || name.contains("\u{0}") {
            throw RequestError("\(key) must be a file name inside Documents/emo-bench, not '\(name)'")
        }
        if name.unicodeScalars.count > maxArtifact {  // no file system has longer names
            throw RequestError("\(key) must be a file name of at most \(maxArtifact) characters, not \(name.unicodeScalars.count)")
        }
    }

    static func integer(_ args: [String: String], _ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
        guard let text = args[key] else { return fallback }
        guard let value = within(text, range) else {
            throw RequestError("\(key) must be an integer in [\(range.lowerBound), \(range.upperBound)], not '\(text)'")
        }
        return value
    }
}

/// The `device` object, with the same fields on iOS and Android.
public struct DeviceInfo {
    public let model: String
    public let manufacturer: String
    public let soc: String
    public let os: String
    public let abi: String

    /// Apple chips by hardware identifier (`utsname.machine`); iOS does not report its SoC, so unknown ones are "?".
    static let chips: [String: String] = [
        "iPhone12,1": "A13", "iPhone12,3": "A13", "iPhone12,5": "A13", "iPhone12,8": "A13",
        "iPhone13,1": "A14", "iPhone13,2": "A14", "iPhone13,3": "A14", "iPhone13,4": "A14",
        "iPhone14,2": "A15", "iPhone14,3": "A15", "iPhone14,4": "A15", "iPhone14,5": "A15", "iPhone14,6": "A15",
        "iPhone14,7": "A15", "iPhone14,8": "A15",
        "iPhone15,2": "A16", "iPhone15,3": "A16", "iPhone15,4": "A16", "iPhone15,5": "A16",
        "iPhone16,1": "A17 Pro", "iPhone16,2": "A17 Pro",
        "iPhone17,1": "A18 Pro", "iPhone17,2": "A18 Pro", "iPhone17,3": "A18", "iPhone17,4": "A18", "iPhone17,5": "A18",
    ]

    /// From `utsname.machine` (on the simulator: its `SIMULATOR_MODEL_IDENTIFIER`), `ProcessInfo`'s OS version and
    /// the build's architecture.
    public static func ios(machine: String, version: OperatingSystemVersion, abi: String) -> DeviceInfo {
        DeviceInfo(model: machine, manufacturer: "Apple", soc: chips[machine] ?? "?", os: osName(version), abi: abi)
    }

    /// "iOS major.minor[.patch]": the device's `os` and Core ML's `runtime_version` (Core ML is the OS's) alike.
    public static func osName(_ version: OperatingSystemVersion) -> String {
        var os = "iOS \(version.majorVersion).\(version.minorVersion)"
        if version.patchVersion > 0 { os += ".\(version.patchVersion)" }
        return os
    }

    func json() -> [String: Any] { ["model": model, "manufacturer": manufacturer, "soc": soc, "os": os, "abi": abi] }
}

/// The result file of the headless benchmark (`emo-mobile/app-bench/1`, the same on iOS and Android; JSON Schema in
/// `emo/contract/schemas/app-bench.schema.json`); `emo-bench --device ios` maps it to a row.
public struct AppBenchResult {
    public static let schema = "emo-mobile/app-bench/1"
    public var artifact: String
    /// "coreml", or "none" when the run failed before a model was chosen.
    public var runtime: String
    public var runtimeVersion: String?
    public var request: [String: Any?]
    public var accelerator: AcceleratorReport
    /// "float32" or "image".
    public var inputType: String
    /// "float32" or "probabilities" (a `--classifier`).
    public var outputType: String
    public var loadMs: Double?
    public var firstInferenceMs: Double?
    public var latenciesMs: [Double]
    public var peakMemoryMb: Double?
    public var device: DeviceInfo
    /// "ok" or "failed: <reason>".
    public var status: String
    public var appVersion: String
    /// The self-test on the bundled examples, run before timing (nil without an examples file).
    public var parity: Agreement?

    public func jsonObject() -> [String: Any] {
        func number(_ v: Double?) -> Any { v.map { $0.isFinite ? $0 as Any : NSNull() } ?? NSNull() }
        func value(_ v: Any?) -> Any { v ?? NSNull() }
        var request: [String: Any] = [:]
        for key in ["accelerator", "threads", "warmup", "iterations"] { request[key] = value(self.request[key] ?? nil) }
        var object: [String: Any] = [
            "schema": AppBenchResult.schema, "app": ["platform": "ios", "version": appVersion], "artifact": artifact,
            "runtime": runtime, "runtime_version": value(runtimeVersion), "request": request,
            "accelerator": ["requested": value(accelerator.requested), "used": accelerator.used, "source": accelerator.source,
                            "nodes": value(accelerator.nodes), "detail": value(accelerator.detail)] as [String: Any],
            "threads": NSNull(), "io": ["input": inputType, "output": outputType],
            "load_ms": number(loadMs), "first_inference_ms": number(firstInferenceMs), "latencies_ms": latenciesMs,
            "peak_memory_mb": number(peakMemoryMb), "device": device.json(), "status": status,
        ]
        if let p = parity {
            object["parity"] = ["max_abs_diff": number(p.maxAbsDiff), "cosine": number(p.cosine),
                                "top1_agreement": p.top1Agreement, "top5_agreement": p.top5Agreement,
                                "num_examples": p.numExamples, "status": p.status] as [String: Any]
        } else {
            object["parity"] = NSNull()
        }
        return object
    }

    /// Write atomically (temporary name, then rename): emo-bench polls for the file.
    public func write(to url: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: jsonObject(), options: [.sortedKeys])
        try data.write(to: url, options: .atomic)
    }
}
