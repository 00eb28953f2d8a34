import CoreML
import EMOCore
import Foundation

/// Headless benchmark mode (ios_demo/BENCHMARK_MODE.md): with `-emoBenchmark PATH` among the launch arguments the
/// app loads the model (timed), runs the self-test on its bundled examples, warms up, times the iterations, and
/// writes the result file atomically.
enum BenchmarkMode {
    static func runIfRequested() -> Bool {
        let args = UserDefaults.standard
        guard let path = args.string(forKey: "emoBenchmark") else { return false }
        let docs = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let home = docs.deletingLastPathComponent()
        let iterations = max(args.integer(forKey: "emoBenchIterations"), 1)
        let warmup = args.integer(forKey: "emoBenchWarmup")
        let unitsName = args.string(forKey: "emoBenchComputeUnits") ?? "ALL"
        let output = home.appendingPathComponent(args.string(forKey: "emoBenchOutput") ?? "Documents/emo-bench/result.json")
        let modelURL = home.appendingPathComponent(path)
        DispatchQueue.global(qos: .userInitiated).async {
            let result = measure(modelURL, unitsName: unitsName, warmup: warmup, iterations: iterations)
            try? result.write(to: output)
            exit(0)
        }
        return true
    }

    static func measure(_ url: URL, unitsName: String, warmup: Int, iterations: Int) -> BenchResult {
        let device = ["model": deviceModel(), "os": "iOS \(ProcessInfo.processInfo.operatingSystemVersionString)"]
        func failed(_ why: String) -> BenchResult {
            BenchResult(artifact: url.lastPathComponent, computeUnits: unitsName, loadMs: nil, firstInferenceMs: nil,
                        latenciesMs: [], peakMemoryMb: peakMemoryMb(), device: device, status: "failed: \(why)", appVersion: "0.1.0")
        }
        guard let stored = ModelStore.load(url) else { return failed("no usable sidecar next to \(url.lastPathComponent)") }
        guard let units = CoreMLRunner.unitNames.first(where: { $0.0 == unitsName })?.1 else { return failed("unknown compute units \(unitsName)") }
        do {
            let start = DispatchTime.now().uptimeNanoseconds
            let runner = try CoreMLRunner(compiledURL: try ModelStore.compiled(url), sidecar: stored.sidecar, computeUnits: units)
            let loadMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            let parity = try stored.examples.map { set in set.agreement(try set.examples.map { try runner.run($0.input) }) }
            let input = stored.examples?.examples.first?.input ?? [Float](repeating: 0.5, count: stored.sidecar.inputSize)
            var first: Double?
            for _ in 0..<warmup {
                let t = DispatchTime.now().uptimeNanoseconds
                _ = try runner.run(input)
                if first == nil { first = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e6 }
            }
            var latencies: [Double] = []
            for _ in 0..<iterations {
                let t = DispatchTime.now().uptimeNanoseconds
                _ = try runner.run(input)
                latencies.append(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e6)
            }
            return BenchResult(artifact: url.lastPathComponent, computeUnits: unitsName, loadMs: loadMs, firstInferenceMs: first,
                               latenciesMs: latencies, peakMemoryMb: peakMemoryMb(), device: device, status: "ok",
                               appVersion: "0.1.0", parity: parity)
        } catch {
            return failed(String(describing: error))
        }
    }

    static func deviceModel() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Peak `phys_footprint` (task_vm_info), in MB.
    static func peakMemoryMb() -> Double? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count) }
        }
        return kr == KERN_SUCCESS ? Double(info.ledger_phys_footprint_peak) / 1_048_576 : nil
    }
}
