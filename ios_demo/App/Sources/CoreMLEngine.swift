import CoreML
import CoreVideo
import EMOCore
import Foundation

/// The Core ML adapter behind EMOCore's `Engine`: the only code that calls Core ML. It builds the input (an
/// `MLMultiArray`, or a BGRA pixel buffer from `ImageTensor.bgra` for an `ImageType` model), calls
/// `prediction(from:)`, and hands the output back; EMOCore decides everything else (batching, the classifier's
/// keys, output checks, the report). Not compiled on this project's CI (no Apple SDK on Linux): see README.md.
final class CoreMLEngine: Engine {
    static let units: [String: MLComputeUnits] = ["CPU_ONLY": .cpuOnly, "CPU_AND_GPU": .cpuAndGPU,
                                                  "CPU_AND_NE": .cpuAndNeuralEngine, "ALL": .all]
    let plan: LoadPlan
    let model: MLModel
    let configuration: MLModelConfiguration
    let compiledURL: URL

    init(plan: LoadPlan, compiled: URL) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = CoreMLEngine.units[plan.computeUnits] ?? .all
        self.plan = plan
        self.configuration = configuration
        self.compiledURL = compiled
        self.model = try MLModel(contentsOf: compiled, configuration: configuration)
    }

    func run(_ input: [Float]) throws -> EngineOutput {
        let value = plan.imageInput ? MLFeatureValue(pixelBuffer: try pixelBuffer(input)) : MLFeatureValue(multiArray: try multiArray(input))
        let result = try model.prediction(from: try MLDictionaryFeatureProvider(dictionary: [plan.inputName: value]))
        guard let feature = result.featureValue(for: plan.outputName) else {
            throw ModelContractError("the model has no output '\(plan.outputName)'; re-export the artifact")
        }
        if feature.type == .dictionary {  // a --classifier: probabilities keyed by label (Int64 keys as text)
            var probabilities: [String: Double] = [:]
            for (key, number) in feature.dictionaryValue {
                probabilities[ClassifierKeys.text(key)] = number.doubleValue
            }
            return .probabilities(probabilities)
        }
        guard let array = feature.multiArrayValue else {
            throw ModelContractError("the output '\(plan.outputName)' is neither a tensor nor a dictionary")
        }
        return .values(values(array))
    }

    private func multiArray(_ input: [Float]) throws -> MLMultiArray {
        let array = try MLMultiArray(shape: plan.inputShape.map { NSNumber(value: $0) }, dataType: .float32)
        guard array.count == input.count else { throw ModelContractError("input of \(input.count) values for \(plan.inputShape)") }
        let pointer = array.dataPointer.bindMemory(to: Float.self, capacity: input.count)  // new arrays are C-contiguous
        input.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: input.count) }
        return array
    }

    private func pixelBuffer(_ input: [Float]) throws -> CVPixelBuffer {
        var created: CVPixelBuffer?
        let attributes = [kCVPixelBufferIOSurfacePropertiesKey as String: [String: Any]()] as CFDictionary
        guard CVPixelBufferCreate(nil, plan.width, plan.height, kCVPixelFormatType_32BGRA, attributes, &created) == kCVReturnSuccess,
              let buffer = created else { throw ModelContractError("cannot allocate a \(plan.width)x\(plan.height) pixel buffer") }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        let row = CVPixelBufferGetBytesPerRow(buffer)
        let bytes = try ImageTensor.bgra(Array(input.prefix(3 * plan.width * plan.height)), width: plan.width,
                                         height: plan.height, bytesPerRow: row)
        guard let base = CVPixelBufferGetBaseAddress(buffer) else { throw ModelContractError("the pixel buffer has no memory") }
        bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return buffer
    }

    /// Every element in logical (C) order, whatever the output's strides and element type.
    private func values(_ array: MLMultiArray) -> [Float] {
        let shape = array.shape.map { $0.intValue }
        var out = [Float](repeating: 0, count: array.count)
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<array.count {
            var rest = i
            for d in stride(from: shape.count - 1, through: 0, by: -1) {
                index[d] = rest % shape[d]
                rest /= shape[d]
            }
            out[i] = array[index.map { NSNumber(value: $0) }].floatValue  // by index: strides are Core ML's concern
        }
        return out
    }

    /// Operations per preferred compute device from Core ML's compute plan (iOS 17.4+); nil before, or for a model
    /// that is not an ML program.
    func report() -> EngineReport {
        var nodes: [String: Int]?
        if #available(iOS 17.4, *) {
            let done = DispatchSemaphore(value: 0)
            let url = compiledURL, configuration = configuration
            final class Counts: @unchecked Sendable { var value: [String: Int]? }  // written before done.signal()
            let counted = Counts()
            Task.detached {
                if let plan = try? await MLComputePlan.load(contentsOf: url, configuration: configuration),
                   case let .program(program) = plan.modelStructure, let main = program.functions["main"] {
                    var counts: [String: Int] = [:]
                    for operation in main.block.operations {
                        guard let usage = plan.deviceUsage(for: operation) else { continue }  // constants have none
                        switch usage.preferred {
                        case .cpu: counts["cpu", default: 0] += 1
                        case .gpu: counts["gpu", default: 0] += 1
                        case .neuralEngine: counts["ane", default: 0] += 1
                        @unknown default: counts["other", default: 0] += 1
                        }
                    }
                    counted.value = counts
                }
                done.signal()
            }
            done.wait()  // the benchmark and the UI call this off the main thread
            nodes = counted.value
        }
        return EngineReport(nodes: nodes, detail: nil,
                            runtimeVersion: DeviceInfo.osName(ProcessInfo.processInfo.operatingSystemVersion))
    }
}

/// Compiles an `.mlpackage` (`MLModel.compileModel`, into a temporary folder; a `.mlmodelc` is ready) and opens it.
/// The screen keeps one loader, so each artifact is compiled once however often its compute units change; the
/// benchmark uses a new one, so its `load_ms` includes compiling, as a first launch does.
final class CoreMLLoader: EngineLoader {
    private var compiled: [String: URL] = [:]  // used on one queue at a time (`inference`, or the benchmark's)

    func load(_ plan: LoadPlan) throws -> Engine {
        let url = URL(fileURLWithPath: plan.path)
        if url.pathExtension == "mlmodelc" { return try CoreMLEngine(plan: plan, compiled: url) }
        if let done = compiled[plan.path], FileManager.default.fileExists(atPath: done.path) {
            return try CoreMLEngine(plan: plan, compiled: done)
        }
        let done = try MLModel.compileModel(at: url)
        compiled[plan.path] = done
        return try CoreMLEngine(plan: plan, compiled: done)
    }
}
