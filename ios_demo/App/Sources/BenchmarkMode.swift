import EMOCore
import Foundation
import UIKit

/// Headless benchmark mode (ios_demo/BENCHMARK_MODE.md): with `-emoBenchmark NAME` among the launch arguments the app
/// runs EMOCore's `Benchmark` on `Documents/emo-bench/NAME` off the main thread, writes the result file (atomically)
/// and exits. Everything but the platform facts below is EMOCore's, tested with `swift test`.
enum BenchmarkMode {
    static func runIfRequested() -> Bool {
        guard let args = BenchmarkRequest.arguments(ProcessInfo.processInfo.arguments) else { return false }
        // the app must stay in the foreground until it exits: Auto-Lock would suspend it (no result) and iOS refuses
        // GPU work from the background. Once the app runs (main queue), before any long work is done.
        DispatchQueue.main.async { UIApplication.shared.isIdleTimerDisabled = true }
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let folder = documents.appendingPathComponent(BenchmarkRequest.folder)
        DispatchQueue.global(qos: .userInitiated).async {
            let fm = FileManager.default
            try? fm.createDirectory(at: folder, withIntermediateDirectories: true)  // a run started by hand has none
            // what earlier runs left (EMOCore decides which): never read beside this run's files
            for name in Benchmark.leftovers(args, listing: (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []) {
                try? fm.removeItem(at: folder.appendingPathComponent(name))
            }
            let listing = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
            let context = BenchmarkContext(folder: folder, listing: listing,
                                           read: { try Data(contentsOf: folder.appendingPathComponent($0)) },
                                           loader: CoreMLLoader(), clock: UptimeClock(), peakMemoryMb: peakMemoryMb,
                                           device: device(), appVersion: appVersion())
            let result = Benchmark.run(args, context: context)
            do {
                try result.write(to: folder.appendingPathComponent(BenchmarkRequest.outputOf(args)))
            } catch {
                NSLog("EMOBenchmark: cannot write the result: \(error)")
            }
            exit(0)
        }
        return true
    }

    struct UptimeClock: Clock {
        func nanos() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    }

    static func appVersion() -> String {
        Bundle.main.object(forInfoDictionaryKey: "CFBundleShortVersionString") as? String ?? "?"
    }

    /// `utsname.machine` ("iPhone15,2"); the simulator reports its host's architecture, so it names the simulated model.
    static func device() -> DeviceInfo {
        var info = utsname()
        uname(&info)
        var machine = withUnsafeBytes(of: &info.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let simulated = ProcessInfo.processInfo.environment["SIMULATOR_MODEL_IDENTIFIER"] { machine = simulated }
        #if arch(arm64)
        let abi = "arm64"
        #else
        let abi = "x86_64"
        #endif
        return DeviceInfo.ios(machine: machine, version: ProcessInfo.processInfo.operatingSystemVersion, abi: abi)
    }

    /// Peak `phys_footprint` (`task_vm_info.ledger_phys_footprint_peak`), in MB.
    static func peakMemoryMb() -> Double? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count) }
        }
        return kr == KERN_SUCCESS ? Double(info.ledger_phys_footprint_peak) / 1_048_576 : nil
    }
}
