import Foundation

/// What a Core ML prediction returns: a tensor's values, or a `--classifier`'s probability dictionary (keyed by
/// label; integer keys as their decimal text).
public enum EngineOutput {
    case values([Float])
    case probabilities([String: Double])
}

/// What the runtime says about what ran: operations per compute device where it reports them (Core ML's
/// `MLComputePlan`, iOS 17.4+: "cpu", "gpu", "ane"), a note, and its version.
public struct EngineReport {
    public let nodes: [String: Int]?
    public let detail: String?
    public let runtimeVersion: String?
    public init(nodes: [String: Int]?, detail: String?, runtimeVersion: String?) {
        self.nodes = nodes; self.detail = detail; self.runtimeVersion = runtimeVersion
    }
}

/// The one interface between the app and Core ML: the adapter (`CoreMLEngine`) turns the input into an
/// `MLMultiArray` or a pixel buffer (bytes from `ImageTensor.bgra`), calls `prediction(from:)` and hands back the
/// output. Every decision (batching, the classifier's keys, output checks, what the report says) is EMOCore's.
public protocol Engine: AnyObject {
    /// One inference on the whole (batched) input tensor, in the sidecar's layout.
    func run(_ input: [Float]) throws -> EngineOutput
    /// Called once after the first inference and before the timed ones.
    func report() -> EngineReport
}

/// What EMOCore asks the platform to open.
public struct LoadPlan {
    /// Absolute path of the artifact (`.mlpackage`, compiled first, or `.mlmodelc`).
    public let path: String
    /// CPU_ONLY, CPU_AND_GPU, CPU_AND_NE or ALL (`MLModelConfiguration.computeUnits`).
    public let computeUnits: String
    public let inputName: String
    public let outputName: String
    /// The whole input's shape (static batch, the sidecar's layout).
    public let inputShape: [Int]
    /// An `ImageType` input (Core ML `--image-input`): pixels, not a tensor.
    public let imageInput: Bool
    public let height: Int
    public let width: Int
}

public protocol EngineLoader {
    func load(_ plan: LoadPlan) throws -> Engine
}

/// Nanoseconds from a monotonic clock (`DispatchTime.now().uptimeNanoseconds` in the app).
public protocol Clock {
    func nanos() -> UInt64
}

/// Core ML's compute units, and what each lets Core ML use.
public enum ComputeUnits {
    public static let names = ["CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL"]
    static let devices = ["CPU_ONLY": ["cpu"], "CPU_AND_GPU": ["cpu", "gpu"], "CPU_AND_NE": ["cpu", "ane"],
                          "ALL": ["cpu", "gpu", "ane"]]

    public static func plan(path: String, sidecar: Sidecar, computeUnits: String) throws -> LoadPlan {
        guard names.contains(computeUnits) else {
            throw ModelContractError("compute units \(computeUnits) are not one of \(names.joined(separator: ", "))")
        }
        let batch = max(sidecar.batch, 1)
        let shape = sidecar.layout == "NHWC" ? [batch, sidecar.height, sidecar.width, 3] : [batch, 3, sidecar.height, sidecar.width]
        return LoadPlan(path: path, computeUnits: computeUnits, inputName: sidecar.inputName, outputName: sidecar.outputName,
                        inputShape: shape, imageInput: sidecar.layout == "image", height: sidecar.height, width: sidecar.width)
    }
}

/// Requested vs what ran: the `accelerator` object of the result file.
public struct AcceleratorReport {
    public let requested: String?
    public let used: [String]
    public let source: String
    public let nodes: [String: Int]?
    public let detail: String?

    public static let sourceComputeUnits = "compute units: Core ML may place each operation on any of these"
    public static let sourceComputePlan = "MLComputePlan: the preferred device of every operation"
    public static let sourceNone = "nothing ran"

    public static func none(_ requested: String?) -> AcceleratorReport {
        AcceleratorReport(requested: requested, used: [], source: sourceNone, nodes: nil, detail: nil)
    }

    /// From the compute plan's operations per device when the OS has it (iOS 17.4+), else the compute units' devices.
    public static func coreML(computeUnits: String, report: EngineReport) -> AcceleratorReport {
        if let nodes = report.nodes, !nodes.isEmpty {
            let used = nodes.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { $0.key }
            return AcceleratorReport(requested: computeUnits, used: used, source: sourceComputePlan, nodes: nodes,
                                     detail: report.detail)
        }
        return AcceleratorReport(requested: computeUnits, used: ComputeUnits.devices[computeUnits] ?? [],
                                 source: sourceComputeUnits, nodes: nil, detail: report.detail)
    }

    /// One line for the screen.
    public func summary() -> String {
        if let nodes = nodes, !nodes.isEmpty {
            return used.map { "\($0) \(nodes[$0] ?? 0)" }.joined(separator: " + ") + " ops"
        }
        return used.isEmpty ? "nothing ran" : used.joined(separator: "+") + " (as allowed)"
    }
}

/// Core ML's classifier keys: the exporter (`emo.export.coreml.classifier_labels`) keeps a label's first occurrence
/// and appends " (index)" to a repeat, because the probability dictionary needs unique keys (ImageNet's clean names
/// repeat "missile" and "sunglasses"). Looking a class up by its raw label would read another class's value.
public enum ClassifierKeys {
    public static func keys(_ sidecar: Sidecar) -> [String] {
        guard sidecar.labels.count == sidecar.numClasses else { return (0..<sidecar.numClasses).map { String($0) } }
        var seen = Set<String>()
        return sidecar.labels.enumerated().map { index, name in
            defer { seen.insert(name) }
            return seen.contains(name) ? "\(name) (\(index))" : name
        }
    }

    /// A key of Core ML's classifier dictionary (`MLFeatureValue.dictionaryValue`'s `AnyHashable`) as the text
    /// `keys` holds: a label as it is, an Int64 class index as its decimal text.
    public static func text(_ key: AnyHashable) -> String { (key.base as? String) ?? "\(key.base)" }

    /// The dictionary in class order; a key the model does not have is an error, never a silent 0.
    public static func probabilities(_ dictionary: [String: Double], keys: [String]) throws -> [Float] {
        try keys.map { key in
            guard let value = dictionary[key] else {
                throw ModelContractError("the classifier has no class '\(key)': its labels are not the sidecar's; re-export the artifact")
            }
            return Float(value)
        }
    }
}

/// An `ImageType` input from the examples file's tensor (NCHW RGB, values 0...255) as BGRA rows for a
/// `kCVPixelFormatType_32BGRA` pixel buffer of `bytesPerRow` (which may be padded).
public enum ImageTensor {
    public static func bgra(_ input: [Float], width: Int, height: Int, bytesPerRow: Int) throws -> [UInt8] {
        let plane = width * height
        guard input.count == 3 * plane, bytesPerRow >= width * 4 else {
            throw ModelContractError("an image input of \(width)x\(height) needs \(3 * plane) values, not \(input.count)")
        }
        var bytes = [UInt8](repeating: 0, count: bytesPerRow * height)
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x, p = y * bytesPerRow + x * 4
                for (offset, channel) in [(0, 2), (1, 1), (2, 0)] {  // B, G, R
                    let v = input[channel * plane + i]
                    guard v >= 0, v <= 255, v == v.rounded() else {
                        throw ModelContractError("an image input takes whole pixel values 0...255, not \(v)")
                    }
                    bytes[p + offset] = UInt8(v)
                }
                bytes[p + 3] = 255
            }
        }
        return bytes
    }
}

/// An `Engine` behind the sidecar's contract: one image's tensor (batch 1) in, one row of `numClasses` floats out.
public final class ModelSession {
    public let sidecar: Sidecar
    public let engine: Engine
    private let keys: [String]

    public init(sidecar: Sidecar, engine: Engine) throws {
        guard sidecar.ioTypes.input == "float32", sidecar.ioTypes.output == "float32" else {
            throw ModelContractError("the sidecar gives the model \(sidecar.ioTypes.input) input; Core ML artifacts take float or image input")
        }
        self.sidecar = sidecar
        self.engine = engine
        self.keys = ClassifierKeys.keys(sidecar)
    }

    public func run(_ input: [Float]) throws -> [Float] {
        guard input.count == sidecar.inputSize else {
            throw ModelContractError("the input has \(input.count) values, the model takes \(sidecar.inputSize)")
        }
        let batch = max(sidecar.batch, 1)
        let whole = batch == 1 ? input : (0..<batch).flatMap { _ in input }
        switch try engine.run(whole) {
        case .probabilities(let dictionary):
            return try ClassifierKeys.probabilities(dictionary, keys: keys)
        case .values(let values):
            guard values.count == sidecar.numClasses * batch else {
                throw ModelContractError("the model returned \(values.count) values, its sidecar says \(batch) x \(sidecar.numClasses); re-export the artifact")
            }
            return Array(values.prefix(sidecar.numClasses))
        }
    }
}

extension ImageTensor {
    /// A camera frame's BGRA8 bytes (`kCVPixelFormatType_32BGRA`, any row padding kept) as RGBA8 for `Preprocessor`.
    public static func rgbaFromBGRA(_ bgra: [UInt8]) -> [UInt8] {
        var rgba = bgra
        var i = 0
        while i + 3 < rgba.count {
            rgba[i] = bgra[i + 2]
            rgba[i + 2] = bgra[i]
            rgba[i + 3] = 255
            i += 4
        }
        return rgba
    }
}
