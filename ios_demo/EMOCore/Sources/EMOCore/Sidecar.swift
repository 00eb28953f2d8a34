import Foundation

/// A sidecar or examples file this app cannot use; the message names the file and the field.
public struct ModelContractError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// ImageNet-style normalisation; the app applies it only when the graph does not (`inGraph` false).
public struct Normalization {
    public let mean: [Float]
    public let std: [Float]
    public let inGraph: Bool
}

/// The contract `emo-export` writes next to every artifact (`{stem}.json`, `emo-mobile/sidecar/1`): what the graph
/// takes and returns, and the labels. The app reads it instead of copying constants: adding a model is dropping an
/// artifact and its sidecar into the bundle.
public struct Sidecar {
    public let variant: String
    public let backend: String
    public let precision: String
    public let file: String
    public let inputName: String
    /// "NCHW", "NHWC" or "image" (a Core ML ImageType: pixel values 0...255).
    public let layout: String
    /// Static batch, or 0 for a symbolic ("batch") dimension.
    public let batch: Int
    public let height: Int
    public let width: Int
    public let normalization: Normalization
    public let outputName: String
    /// "logits" or "probabilities" (a Core ML `--classifier`).
    public let outputKind: String
    public let numClasses: Int
    public let labels: [String]
    public let examplesFile: String?
    /// The element types of `quantization.io` ("float32" when absent): Core ML artifacts take float or image input.
    public let ioTypes: (input: String, output: String)

    public static let layouts = ["NCHW", "NHWC", "image"]
    public static let outputKinds = ["logits", "probabilities"]

    /// Elements of one image's input tensor (batch 1).
    public var inputSize: Int { 3 * height * width }

    public func label(_ index: Int) -> String { index < labels.count ? labels[index] : String(index) }

    /// `quantization.io.{end}.dtype` of a full-integer artifact, else "float32".
    static func ioType(_ root: [String: Any], _ end: String) -> String {
        let io = (root["quantization"] as? [String: Any])?["io"] as? [String: Any]
        return (io?[end] as? [String: Any])?["dtype"] as? String ?? "float32"
    }

    public static func parse(_ data: Data, where place: String = "sidecar") throws -> Sidecar {
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelContractError("\(place) is not a JSON object")
        }
        func fail(_ field: String, _ expected: String, _ value: Any?) -> ModelContractError {
            let shown = String(String(describing: value ?? "null").prefix(60))
            return ModelContractError("\(place): field '\(field)' must be \(expected), not \(shown); re-export the artifact")
        }
        func string(_ object: [String: Any], _ key: String, _ field: String, default fallback: String? = nil) throws -> String {
            if object[key] == nil, let fallback = fallback { return fallback }
            guard let value = object[key] as? String, !value.isEmpty else { throw fail(field, "a non-empty string", object[key]) }
            return value
        }
        guard let input = root["input"] as? [String: Any] else { throw fail("input", "an object", root["input"]) }
        let layout = try string(input, "layout", "input.layout", default: "NCHW")
        guard layouts.contains(layout) else { throw fail("input.layout", "one of \(layouts.joined(separator: ", "))", layout) }
        guard let shape = input["shape"] as? [Any], shape.count == 4 else { throw fail("input.shape", "a list of 4", input["shape"]) }
        var dims: [Int] = []
        for value in shape.dropFirst() {
            guard let d = value as? Int, d >= 1, d <= 16384 else { throw fail("input.shape", "4 positive sizes", shape) }
            dims.append(d)
        }
        let batch: Int
        if let symbol = shape[0] as? String, symbol == "batch" {
            batch = 0
        } else if let b = shape[0] as? Int, b >= 1 {
            batch = b
        } else {
            throw fail("input.shape", "4 positive sizes", shape)
        }
        let channels = layout == "NHWC" ? dims[2] : dims[0]
        guard channels == 3 else { throw fail("input.shape", "RGB (3 channels in \(layout))", shape) }
        guard let norm = input["normalization"] as? [String: Any] else {
            throw fail("input.normalization", "an object", input["normalization"])
        }
        guard let inGraph = norm["in_graph"] as? Bool else {
            throw fail("input.normalization.in_graph", "a boolean", norm["in_graph"])
        }
        func triple(_ key: String) throws -> [Float] {
            guard let values = norm[key] as? [Any], values.count == 3 else { throw fail("input.normalization.\(key)", "3 numbers", norm[key]) }
            return try values.map { value -> Float in
                guard let number = value as? Double else { throw fail("input.normalization.\(key)", "3 numbers", values) }
                return Float(number)
            }
        }
        let mean = try triple("mean"), std = try triple("std")
        guard std.allSatisfy({ $0 > 0 }) else { throw fail("input.normalization.std", "3 numbers > 0", std) }
        guard let output = root["output"] as? [String: Any] else { throw fail("output", "an object", root["output"]) }
        let kind = try string(output, "kind", "output.kind", default: "logits")
        guard outputKinds.contains(kind) else { throw fail("output.kind", "one of \(outputKinds.joined(separator: ", "))", kind) }
        var numClasses = -1
        if let n = root["num_classes"] as? Int {
            numClasses = n
        } else if let outShape = output["shape"] as? [Any], outShape.count == 2, let n = outShape[1] as? Int {
            numClasses = n
        }
        guard numClasses >= 1 else { throw fail("num_classes", "a positive integer", root["num_classes"]) }
        var labels: [String] = []
        if let labelsObject = root["labels"] as? [String: Any] {
            guard let names = labelsObject["names"] as? [String] else { throw fail("labels.names", "a list of strings", labelsObject["names"]) }
            guard names.count == numClasses else { throw fail("labels.names", "\(numClasses) names", names.count) }
            labels = names
        }
        return Sidecar(
            variant: try string(root, "variant", "variant"), backend: try string(root, "backend", "backend"),
            precision: try string(root, "precision", "precision"), file: try string(root, "file", "file"),
            inputName: try string(input, "name", "input.name", default: "image"), layout: layout, batch: batch,
            height: layout == "NHWC" ? dims[0] : dims[1], width: layout == "NHWC" ? dims[1] : dims[2],
            normalization: Normalization(mean: mean, std: std, inGraph: inGraph),
            outputName: try string(output, "name", "output.name", default: "logits"), outputKind: kind,
            numClasses: numClasses, labels: labels,
            examplesFile: root["examples"] == nil ? nil : try string(root, "examples", "examples"),
            ioTypes: (ioType(root, "input"), ioType(root, "output")))
    }
}
