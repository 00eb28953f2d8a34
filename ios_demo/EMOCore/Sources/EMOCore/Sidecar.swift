import Foundation

/// A model, sidecar or examples file this app cannot use; the message names the file and the field. The readers
/// of the contract files throw `ContractError` (with the field and the reason of the conformance vectors).
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

/// How a photo becomes the input (`input.preprocessing`): resize the shorter side to `Int(max(H, W) / cropPct)`
/// with `interpolation`, then centre-crop H x W. A sidecar without the block (older exports) means the authors' eval
/// transform, crop fraction 0.875 (`emo.contract.sidecar.CROP_PCT`).
public struct Preprocessing {
    public static let defaultCropPct = 0.875
    public var cropPct = Preprocessing.defaultCropPct
    public var interpolation = "bicubic"
    public var resize = "shorter-side"
}

/// The element type of one end of the graph (`quantization.io.{input,output}`): real = (q - zeroPoint) * scale for
/// an integer type; "float32" when the sidecar says nothing.
public struct TensorSpec: Equatable {
    public static let float32 = TensorSpec(dtype: "float32", scale: 1, zeroPoint: 0)
    /// The element types a sidecar's `quantization.io` may name (the schema's `$defs.quantized_io.dtype`).
    public static let dtypes = ["int8", "uint8", "int16", "float32"]
    public let dtype: String
    public let scale: Float
    public let zeroPoint: Int
    public var quantized: Bool { dtype != "float32" }
}

/// The contract `emo-export` writes next to every artifact (`{stem}.json`, `emo-mobile/sidecar/1`): what the graph
/// takes (layout, size, range, normalisation, crop fraction) and returns, and the labels. The app reads it instead of
/// copying constants: adding a model is dropping an artifact and its sidecar into the bundle. `parse` is the
/// contract's validator (`emo.contract.sidecar`, JSON Schema `emo/contract/schemas/sidecar.schema.json` and its
/// x-rules), checked against the conformance vectors.
public struct Sidecar {
    public static let schema = "emo-mobile/sidecar/1"
    public static let maxBytes = 16 << 20
    /// batch x 3 x H x W: what a reader may allocate for one input (`emo.contract.sidecar.MAX_INPUT_ELEMENTS`).
    public static let maxInputElements = 1 << 28
    static let fix = "re-export the artifact with emo-export"
    static let required = ["schema", "variant", "backend", "precision", "file", "sha256", "num_classes", "weights",
                           "input", "output"]

    public let variant: String
    public let backend: String
    public let precision: String
    public let file: String
    public let sha256: String
    public let sizeBytes: Int?
    public let inputName: String
    /// "NCHW", "NHWC" or "image" (a Core ML ImageType: pixel values 0...255).
    public let layout: String
    /// Static batch, or 0 for a symbolic ("batch") dimension.
    public let batch: Int
    public let height: Int
    public let width: Int
    public let normalization: Normalization
    public let preprocessing: Preprocessing
    public let outputName: String
    /// "logits" or "probabilities" (a Core ML `--classifier`).
    public let outputKind: String
    public let numClasses: Int
    /// The class names (empty for a model exported without labels).
    public let labels: [String]
    public let examplesFile: String?
    public let inputSpec: TensorSpec
    public let outputSpec: TensorSpec

    public static var layouts: [String] { Vocabulary.layouts }
    public static var outputKinds: [String] { Vocabulary.outputKinds }

    /// The element types of `quantization.io` ("float32" when absent): Core ML artifacts take float or image input.
    public var ioTypes: (input: String, output: String) { (inputSpec.dtype, outputSpec.dtype) }

    /// Elements of one image's input tensor (batch 1).
    public var inputSize: Int { 3 * height * width }

    /// The name of class `index`: its label, or "class N" for a model exported without labels (as every reader).
    public func label(_ index: Int) -> String { index >= 0 && index < labels.count ? labels[index] : "class \(index)" }

    /// Parse and check a sidecar file's bytes (UTF-8, at most `maxBytes`); `place` names it in errors.
    public static func parse(_ data: Data, where place: String = "sidecar") throws -> Sidecar {
        try validate(try BoundedJSON.parse(data, what: "sidecar \(place)", limit: maxBytes, fix: fix), where: place)
    }

    /// The `Sidecar` of a parsed document, or a `ContractError` naming the first wrong field.
    public static func validate(_ document: JSONValue, where place: String) throws -> Sidecar {
        let c = Check(what: "sidecar \(place)", fix: fix)
        let root = try c.root(document)
        if root["schema"] == nil { throw c.missing("schema", reason: "schema") }
        try c.require(root, "", required)
        for (key, value) in root.entries {
            switch key {
            case "schema":
                guard value.string.map({ Check.same($0, schema) }) == true else {
                    throw c.wrong("schema", "schema", "'\(schema)' (a sidecar this version reads)", value)
                }
            case "variant": try c.enumOf(key, value, Vocabulary.variants)
            case "backend": try c.enumOf(key, value, Vocabulary.formats.map { $0.name },
                                         "a format emo-export writes (see emo/contract/vocabulary.json)")
            case "precision": try c.enumOf(key, value, Vocabulary.precisions)
            case "file": try c.string(key, value, 1, 255, "the artifact's own file name (no folder)", pattern: Check.isFileName)
            case "sha256": try c.sha256(key, value)
            case "size_bytes": try c.integer(key, value, 1, 1_099_511_627_776, "the artifact's size in bytes")
            case "num_classes": try c.integer(key, value, 1, 100_000, "an integer in 1..100000")
            case "weights": try checkWeights(c, value)
            case "input": try checkInput(c, value)
            case "output": try checkOutput(c, value)
            case "labels": try checkLabels(c, value)
            case "examples":
                try c.string(key, value, 15, 255, "the examples file's name ({stem}.examples.json, no folder)") {
                    Check.hasSuffix($0, Vocabulary.examplesSuffix) && Check.isFileName($0)
                }
            case "quantization": try checkQuantization(c, value)
            case "parity":
                let parity = try c.obj(key, value)
                if let status = parity["status"] { try c.string("parity.status", status, 0, Int.max, "a string") }
            default: break
            }
        }
        return try build(c, root)
    }

    static func checkWeights(_ c: Check, _ value: JSONValue) throws {
        let weights = try c.obj("weights", value)
        if weights["random_init"] == .bool(true) {
            if let seed = weights["seed"] { try c.integer("weights.seed", seed, 0, 4_294_967_295, "an integer in 0..4294967295") }
            return
        }
        try c.require(weights, "weights", ["path", "sha256"])
        for (key, v) in weights.entries {
            switch key {
            case "path":
                try c.string("weights.path", v, 1, 4096, "the checkpoint's path (or 'random_init': true)") {
                    !$0.unicodeScalars.contains(where: Check.isC0OrDel)
                }
            case "sha256": try c.sha256("weights.sha256", v)
            case "ema": try c.bool("weights.ema", v)
            default: break
            }
        }
    }

    /// A batch: "batch" (symbolic) or 1...1024 (`anyOf`: the branch of the value's JSON type decides the reason).
    static func checkBatch(_ c: Check, _ field: String, _ value: JSONValue) throws {
        let expected = "a batch of 1..1024 or \"batch\""
        switch value {
        case .string(let s): if !Check.same(s, "batch") { throw c.wrong(field, "enum", expected, value) }
        case .number: try c.integer(field, value, 1, 1024, expected)
        default: throw c.wrong(field, "type", expected, value)
        }
    }

    static func checkInput(_ c: Check, _ value: JSONValue) throws {
        let input = try c.obj("input", value)
        try c.require(input, "input", ["shape", "normalization"])
        for (key, v) in input.entries {
            switch key {
            case "name": try c.string("input.name", v, 1, 256, "the graph's input name")
            case "shape":
                let shape = try c.array("input.shape", v, 4, 4, "[batch, ...] with 4 sizes")
                try checkBatch(c, "input.shape[0]", shape[0])
                for k in 1...3 { try c.integer("input.shape[\(k)]", shape[k], 1, 4096, "a size in 1..4096") }
            case "layout": try c.enumOf("input.layout", v, Vocabulary.layouts)
            case "normalization":
                let norm = try c.obj("input.normalization", v, "an object with a boolean 'in_graph'")
                try c.require(norm, "input.normalization", ["in_graph", "mean", "std"])
                for (name, x) in norm.entries {
                    let field = "input.normalization.\(name)"
                    switch name {
                    case "in_graph": try c.bool(field, x)
                    case "mean":
                        for (k, m) in try c.array(field, x, 3, 3, "3 numbers").enumerated() {
                            try c.number("\(field)[\(k)]", m, -1000, 1000, "3 numbers")
                        }
                    case "std":
                        for (k, m) in try c.array(field, x, 3, 3, "3 numbers > 0").enumerated() {
                            try c.number("\(field)[\(k)]", m, 0, 1000, "3 numbers > 0", exclusiveMin: true)
                        }
                    default: break
                    }
                }
            case "preprocessing":
                let pre = try c.obj("input.preprocessing", v)
                for (name, x) in pre.entries {
                    let field = "input.preprocessing.\(name)"
                    switch name {
                    case "resize": try c.enumOf(field, x, ["shorter-side"], "'shorter-side'")
                    case "crop_pct": try c.number(field, x, 0, 1, "a number in (0, 1]", exclusiveMin: true)
                    case "interpolation": try c.enumOf(field, x, Vocabulary.interpolations)
                    default: break
                    }
                }
            default: break
            }
        }
    }

    static func checkOutput(_ c: Check, _ value: JSONValue) throws {
        let output = try c.obj("output", value)
        for (key, v) in output.entries {
            switch key {
            case "name": try c.string("output.name", v, 1, 256, "the graph's output name")
            case "kind": try c.enumOf("output.kind", v, Vocabulary.outputKinds)
            case "shape":
                let shape = try c.array("output.shape", v, 2, 2, "[batch, num_classes]")
                try checkBatch(c, "output.shape[0]", shape[0])
                try c.integer("output.shape[1]", shape[1], 1, 100_000, "num_classes")
            default: break
            }
        }
    }

    static func checkLabels(_ c: Check, _ value: JSONValue) throws {
        guard let labels = try c.objOrNull("labels", value, "null or an object with 'names'") else { return }
        try c.require(labels, "labels", ["names"])
        for (key, v) in labels.entries {
            switch key {
            case "source": try c.string("labels.source", v, 0, 4096, "a string")
            case "names":
                for (k, name) in try c.array("labels.names", v, 0, 100_000, "a list of class names").enumerated() {
                    try c.string("labels.names[\(k)]", name, 1, 256,
                                 "class names of 1..256 characters, not blank, without control characters",
                                 pattern: Check.isLabel)
                }
            default: break
            }
        }
    }

    static func checkQuantization(_ c: Check, _ value: JSONValue) throws {
        guard let quantization = try c.objOrNull("quantization", value, "null or an object"),
              let ioValue = quantization["io"] else { return }
        let io = try c.obj("quantization.io", ioValue, "an object with 'input' and 'output'")
        try c.require(io, "quantization.io", ["input", "output"])
        for (end, v) in io.entries where end == "input" || end == "output" {
            let path = "quantization.io.\(end)"
            let spec = try c.obj(path, v, "an object with dtype, scale and zero_point")
            try c.require(spec, path, ["dtype", "scale", "zero_point"])
            for (key, x) in spec.entries {
                switch key {
                case "dtype": try c.enumOf("\(path).dtype", x, TensorSpec.dtypes)
                case "scale": try c.number("\(path).scale", x, 0, 1e6, "a number in 0..1e6")
                case "zero_point": try c.integer("\(path).zero_point", x, -32768, 65535, "an integer")
                default: break
                }
            }
        }
    }

    static func show(_ list: [JSONValue]) -> String { "[" + list.map { BoundedJSON.shown($0) }.joined(separator: ", ") + "]" }

    /// The cross-field rules (the schema's x-rules, in its order), then the typed value.
    static func build(_ c: Check, _ root: JSONObject) throws -> Sidecar {
        let input = root["input"]!.object!
        let shape = input["shape"]!.array!
        let layout = input["layout"]?.string ?? "NCHW"
        let dims = (1...3).map { Int(shape[$0].number!) }
        let batch = shape[0].string != nil ? 0 : Int(shape[0].number!)
        let channels = layout == "NHWC" ? dims[2] : dims[0]
        guard channels == 3 else {
            throw c.fail("input.shape", "mismatch", "must hold RGB (3 channels in \(layout)), not \(show(shape))")
        }
        guard max(batch, 1) * dims[0] * dims[1] * dims[2] <= maxInputElements else {
            throw c.fail("input.shape", "range", "must have at most \(maxInputElements) elements, not \(show(shape))")
        }
        let backend = root["backend"]!.string!
        if layout == "image" && (backend != "coreml" || max(batch, 1) != 1) {
            throw c.fail("input.layout", "mismatch", "'image' (a Core ML ImageType) needs backend coreml and batch 1")
        }
        let format = Vocabulary.format(backend)!
        let precision = root["precision"]!.string!
        guard format.precisions.contains(where: { Check.same($0, precision) }) else {
            throw c.fail("precision", "mismatch", "must be one of \(format.precisions.joined(separator: ", ")) for " +
                         "\(format.name), not '\(precision)'")
        }
        let file = root["file"]!.string!
        guard Check.hasSuffix(file.lowercased(), format.suffix) else {
            throw c.fail("file", "mismatch", "must end with \(format.suffix) for \(format.name), not \(BoundedJSON.shown(.string(file)))")
        }
        let numClasses = Int(root["num_classes"]!.number!)
        let output = root["output"]!.object!
        if let outShape = output["shape"]?.array, Int(outShape[1].number!) != numClasses {
            throw c.fail("output.shape", "mismatch", "must end with num_classes \(numClasses), not \(show(outShape))")
        }
        let labelsObject = root["labels"]?.object
        let labels = labelsObject?["names"]?.array?.map { $0.string! } ?? []
        if labelsObject != nil && labels.count != numClasses {
            throw c.fail("labels.names", "mismatch", "must hold \(numClasses) names (num_classes), not \(labels.count)")
        }
        var specs: [String: TensorSpec] = [:]
        if let io = root["quantization"]?.object?["io"]?.object {
            for end in ["input", "output"] {
                let spec = io[end]!.object!
                let dtype = spec["dtype"]!.string!, scale = spec["scale"]!.number!
                if dtype != "float32" && scale <= 0 {
                    throw c.fail("quantization.io.\(end).scale", "range", "must be > 0 for an integer tensor")
                }
                specs[end] = dtype == "float32" ? .float32 :
                    TensorSpec(dtype: dtype, scale: Float(scale), zeroPoint: Int(spec["zero_point"]!.number!))
            }
        }
        let norm = input["normalization"]!.object!
        func floats(_ key: String) -> [Float] { norm[key]!.array!.map { Float($0.number!) } }
        let pre = input["preprocessing"]?.object
        let nhwc = layout == "NHWC"
        return Sidecar(
            variant: root["variant"]!.string!, backend: backend, precision: precision, file: file,
            sha256: root["sha256"]!.string!, sizeBytes: root["size_bytes"]?.number.map { Int($0) },
            inputName: input["name"]?.string ?? "image", layout: layout, batch: batch,
            height: nhwc ? dims[0] : dims[1], width: nhwc ? dims[1] : dims[2],
            normalization: Normalization(mean: floats("mean"), std: floats("std"), inGraph: norm["in_graph"] == .bool(true)),
            preprocessing: Preprocessing(cropPct: pre?["crop_pct"]?.number ?? Preprocessing.defaultCropPct,
                                         interpolation: pre?["interpolation"]?.string ?? "bicubic",
                                         resize: pre?["resize"]?.string ?? "shorter-side"),
            outputName: output["name"]?.string ?? "logits", outputKind: output["kind"]?.string ?? "logits",
            numClasses: numClasses, labels: labels, examplesFile: root["examples"]?.string,
            inputSpec: specs["input"] ?? .float32, outputSpec: specs["output"] ?? .float32)
    }
}
