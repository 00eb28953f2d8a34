import Foundation

/// The result file of the app's headless benchmark mode (`ios_demo/BENCHMARK_MODE.md`, `emo-mobile/ios-bench/1`);
/// `emo-bench --device ios` copies it back and maps it to a result row (summary statistics computed there).
public struct BenchResult {
    public static let schema = "emo-mobile/ios-bench/1"
    public var artifact: String
    /// CPU_ONLY, CPU_AND_GPU, CPU_AND_NE or ALL (`MLModelConfiguration.computeUnits`).
    public var computeUnits: String
    public var loadMs: Double?
    public var firstInferenceMs: Double?
    public var latenciesMs: [Double]
    public var peakMemoryMb: Double?
    public var device: [String: String]
    /// "ok" or "failed: <reason>".
    public var status: String
    public var appVersion: String
    /// The self-test on the bundled examples, run before timing (nil without an examples file).
    public var parity: Agreement?

    public init(artifact: String, computeUnits: String, loadMs: Double?, firstInferenceMs: Double?, latenciesMs: [Double],
                peakMemoryMb: Double?, device: [String: String], status: String, appVersion: String, parity: Agreement? = nil) {
        self.artifact = artifact; self.computeUnits = computeUnits; self.loadMs = loadMs
        self.firstInferenceMs = firstInferenceMs; self.latenciesMs = latenciesMs; self.peakMemoryMb = peakMemoryMb
        self.device = device; self.status = status; self.appVersion = appVersion; self.parity = parity
    }

    public func jsonObject() -> [String: Any] {
        func finite(_ v: Double?) -> Any { v.map { $0.isFinite ? $0 as Any : NSNull() } ?? NSNull() }
        var object: [String: Any] = [
            "schema": BenchResult.schema, "artifact": artifact, "compute_units": computeUnits,
            "load_ms": finite(loadMs), "first_inference_ms": finite(firstInferenceMs), "latencies_ms": latenciesMs,
            "peak_memory_mb": finite(peakMemoryMb), "device": device, "status": status, "app_version": appVersion,
        ]
        if let p = parity {
            object["parity"] = ["max_abs_diff": finite(p.maxAbsDiff), "cosine": finite(p.cosine),
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
