import Foundation

/// One bundled example: its source photo, the exact input tensor (batch 1), PyTorch's output and top-5.
public struct Example {
    public let source: String
    public let inputShape: [Int]
    public let input: [Float]
    public let output: [Float]
    public let top5: [Int]
    public let top5Labels: [String]
}

/// How far a runtime's outputs are from PyTorch's on the bundled examples, judged by the file's tolerance.
public struct Agreement {
    public let maxAbsDiff: Double
    public let cosine: Double
    public let top1Agreement: Double
    public let top5Agreement: Double
    public let numExamples: Int
    public let status: String
    public var passed: Bool { status == "passed" }
}

/// `{stem}.examples.json` (`emo-mobile/examples/1`), read alike by the Python tools, the Kotlin core and this one.
/// Tensors are base64: "u8" one byte per element, value = Float(byte) / Float(divisor); "f32le" IEEE float32
/// little-endian; elements in row-major order of "shape".
public struct ExampleSet {
    public static let schema = "emo-mobile/examples/1"
    public static let maxBytes = 256 << 20
    public static let maxTensorElements = 1 << 28
    public static let encodings = ["u8", "f32le"]
    public static let toleranceNames = ["max_abs_diff", "cosine", "top1_agreement", "top5_agreement"]
    /// The parity policy (`emo.contract.examples.TOLERANCES`): the tolerances each precision needs, in Python's
    /// order, and their bounds; an examples file may be stricter, never looser. An XCTest compares it with Python's.
    public static let tolerances: [(precision: String, bounds: [(name: String, bound: Double)])] = [
        ("fp32", [("max_abs_diff", 1e-4)]),
        ("fp16", [("top1_agreement", 0.99), ("cosine", 0.999)]),
        ("int8", [("top1_agreement", 0.87), ("cosine", 0.99)]),
        ("w8a16", [("top1_agreement", 0.87), ("cosine", 0.995)]),
    ]
    /// Tolerance names that bound from above; the others bound from below.
    public static let upperBounds = ["max_abs_diff"]
    static let fix = "re-export the artifact with emo-export"

    public let artifact: String
    public let precision: String
    public let outputKind: String
    public let tolerance: [String: Double]
    /// The tolerance names in the file's order (the order `agreement` reports failures in).
    public let toleranceOrder: [String]
    public let examples: [Example]

    /// Parse and check an examples file's bytes (UTF-8, at most `maxBytes`); `place` names it in errors.
    public static func parse(_ data: Data, where place: String = "examples file") throws -> ExampleSet {
        try validate(try BoundedJSON.parse(data, what: "examples file \(place)", limit: maxBytes, fix: fix), where: place)
    }

    /// The examples of a parsed document, or a `ContractError` naming the first wrong field: the schema
    /// (`emo/contract/schemas/examples.schema.json`, `schema` first: a file of another kind is refused whole), the
    /// tolerance policy, then each tensor's sizes and bytes, and outputs of one size (its x-rules).
    public static func validate(_ document: JSONValue, where place: String) throws -> ExampleSet {
        let c = Check(what: "examples file \(place)", fix: fix)
        let root = try c.root(document)
        guard let schemaValue = root["schema"] else { throw c.missing("schema", reason: "schema") }
        guard schemaValue.string.map({ Check.same($0, schema) }) == true else {
            throw c.wrong("schema", "schema", "'\(schema)'", schemaValue)
        }
        try c.require(root, "", ["schema", "precision", "tolerance", "examples"])
        for (key, value) in root.entries {
            switch key {
            case "artifact": try c.string(key, value, 0, 255, "the artifact's file name")
            case "artifact_sha256": try c.sha256(key, value)
            case "precision": try c.enumOf(key, value, Vocabulary.precisions)
            case "tolerance":
                let expected = "one of the tolerance names \(toleranceNames.joined(separator: ", "))"
                let tolerance = try c.obj(key, value, expected)
                if let unknown = tolerance.keys.filter({ name in !toleranceNames.contains { Check.same($0, name) } })
                    .sorted(by: { Array($0.unicodeScalars.map { $0.value }).lexicographicallyPrecedes($1.unicodeScalars.map { $0.value }) }).first {
                    throw c.wrong("tolerance.\(unknown)", "enum", expected, .string(unknown))
                }
                if tolerance.count == 0 { throw c.wrong("tolerance", "length", expected, value) }
                for (name, bound) in tolerance.entries {
                    if name == "max_abs_diff" {
                        try c.number("tolerance.\(name)", bound, 0, 1e6, "a number in 0..1e6")
                    } else {
                        try c.number("tolerance.\(name)", bound, 0, 1, "a number in 0..1")
                    }
                }
            case "examples":
                for (i, e) in try c.array(key, value, 1, 16, "a list of 1..16 examples").enumerated() {
                    try checkExample(c, "examples[\(i)]", e)
                }
            default: break
            }
        }
        let precision = root["precision"]?.string
        let toleranceObject = root["tolerance"]!.object!
        var tolerance: [String: Double] = [:]
        for (name, bound) in toleranceObject.entries { tolerance[name] = bound.number! }
        for (name, bound) in tolerances.first(where: { $0.precision == precision })?.bounds ?? [] {
            guard let value = tolerance[name] else {
                throw c.fail("tolerance.\(name)", "required", "is missing (the \(precision!) policy needs it)")
            }
            let upper = upperBounds.contains(name)
            if upper ? value > bound : value < bound {
                throw c.fail("tolerance.\(name)", "range", "must not be looser than the \(precision!) policy " +
                             "(\(upper ? "<=" : ">=") \(bound)), not \(value)")
            }
        }
        var examples: [Example] = []
        for (i, item) in root["examples"]!.array!.enumerated() {
            let e = item.object!
            let input = e["input"]!.object!
            let decodedInput = try decodeChecked(c, "examples[\(i)].input", input)
            let output = try decodeChecked(c, "examples[\(i)].output", e["output"]!.object!)
            if let first = examples.first, first.output.count != output.count {
                throw c.fail("examples[\(i)].output.shape", "mismatch", "must have \(first.output.count) elements like examples[0].output")
            }
            let top = e["top5"]!.array!.map { $0.object! }
            examples.append(Example(
                source: e["source"]?.string ?? "",
                inputShape: input["shape"]!.array!.map { Int($0.number!) },
                input: decodedInput, output: output,
                top5: top.map { Int($0["index"]!.number!) },
                top5Labels: top.map { $0["label"]?.string ?? "" }))
        }
        let kind = root["output"]?.object?["kind"]?.string
        return ExampleSet(artifact: root["artifact"]?.string ?? "", precision: precision ?? "",
                          outputKind: kind.map { Vocabulary.outputKinds.contains($0) } == true ? kind! : "logits",
                          tolerance: tolerance, toleranceOrder: toleranceObject.keys, examples: examples)
    }

    static func checkExample(_ c: Check, _ path: String, _ value: JSONValue) throws {
        let example = try c.obj(path, value)
        try c.require(example, path, ["input", "output", "top5"])
        for (key, v) in example.entries {
            switch key {
            case "source": try c.string("\(path).source", v, 0, 255, "a string")
            case "input", "output": try checkTensor(c, "\(path).\(key)", v)
            case "top5":
                for (k, item) in try c.array("\(path).top5", v, 0, 5, "a list of at most 5 classes").enumerated() {
                    let entry = try c.obj("\(path).top5[\(k)]", item, "an object with an 'index'")
                    try c.require(entry, "\(path).top5[\(k)]", ["index"])
                    try c.integer("\(path).top5[\(k)].index", entry["index"]!, 0, 99999, "a class index")
                }
            default: break
            }
        }
    }

    /// A tensor record as the schema's `$defs.tensor` says (sizes and bytes are checked when decoding).
    static func checkTensor(_ c: Check, _ path: String, _ value: JSONValue) throws {
        let record = try c.obj(path, value, "a tensor record (shape, encoding, data)")
        try c.require(record, path, ["shape", "encoding", "data"])
        if record["encoding"] == .string("u8") && record["divisor"] == nil { throw c.missing("\(path).divisor") }
        for (key, v) in record.entries {
            let field = "\(path).\(key)"
            switch key {
            case "shape":
                for (k, d) in try c.array(field, v, 1, 8, "a list of 1..8 positive sizes").enumerated() {
                    try c.integer("\(field)[\(k)]", d, 1, Double(maxTensorElements), "a positive size")
                }
            case "dtype": try c.enumOf(field, v, ["float32"], "'float32'")
            case "encoding": try c.enumOf(field, v, encodings)
            case "divisor":
                guard v == .number(1) || v == .number(255) else { throw c.wrong(field, "enum", "1 or 255", v) }
            case "data": try c.string(field, v, 0, 1_431_655_768, "base64 text", pattern: Check.isBase64)
            default: break
            }
        }
    }

    /// A checked tensor record -> its float32 elements (row-major), after the element-count and byte-count rules.
    static func decodeChecked(_ c: Check, _ path: String, _ record: JSONObject) throws -> [Float] {
        let shape = record["shape"]!.array!.map { Int($0.number!) }
        var count = 1
        for d in shape {
            count *= d
            guard count <= maxTensorElements else {
                throw c.fail("\(path).shape", "range", "must have at most \(maxTensorElements) elements, not \(shape)")
            }
        }
        let u8 = record["encoding"] == .string("u8")
        let bytes = count * (u8 ? 1 : 4)
        let text = record["data"]!.string!
        let needs = "must hold \(bytes) bytes for shape \(shape) in \(u8 ? "u8" : "f32le")"
        guard text.utf8.count == 4 * ((bytes + 2) / 3) else { throw c.fail("\(path).data", "length", needs) }
        guard let raw = Data(base64Encoded: text) ?? Base64.decode(text) else {
            throw c.fail("\(path).data", "format", "must be base64 text")
        }
        guard raw.count == bytes else { throw c.fail("\(path).data", "length", "\(needs), not \(raw.count)") }
        if u8 {
            let d = Float(record["divisor"]!.number!)
            return raw.map { Float($0) / d }
        }
        let b = [UInt8](raw)
        return (0..<count).map { i in
            let k = i * 4
            return Float(bitPattern: UInt32(b[k]) | UInt32(b[k + 1]) << 8 | UInt32(b[k + 2]) << 16 | UInt32(b[k + 3]) << 24)
        }
    }

    /// A tensor record (a parsed JSON object, as in an examples file) -> its float32 elements, checked.
    public static func decode(_ record: JSONValue, _ at: String) throws -> [Float] {
        let c = Check(what: at, fix: fix)
        try checkTensor(c, "tensor", record)
        return try decodeChecked(c, "tensor", record.object!)
    }

    /// Compare `outputs` (one per example, in order) with the expected outputs, as `emo.runtime_bench.examples`.
    public func agreement(_ outputs: [[Float]]) -> Agreement {
        guard outputs.count == examples.count, zip(outputs, examples).allSatisfy({ $0.count == $1.output.count }) else {
            return Agreement(maxAbsDiff: .nan, cosine: .nan, top1Agreement: 0, top5Agreement: 0, numExamples: examples.count,
                             status: "failed: \(outputs.count) outputs do not match the \(examples.count) expected outputs")
        }
        guard outputs.allSatisfy({ $0.allSatisfy { $0.isFinite } }) else {
            return Agreement(maxAbsDiff: .nan, cosine: .nan, top1Agreement: 0, top5Agreement: 0, numExamples: examples.count,
                             status: "failed: non-finite outputs")
        }
        var maxDiff = 0.0, minCos = 1.0, top1 = 0, top5 = 0
        for (a, example) in zip(outputs, examples) {
            let e = example.output
            var dot = 0.0, na = 0.0, ne = 0.0
            for j in a.indices {
                maxDiff = max(maxDiff, abs(Double(a[j]) - Double(e[j])))
                dot += Double(a[j]) * Double(e[j]); na += Double(a[j]) * Double(a[j]); ne += Double(e[j]) * Double(e[j])
            }
            minCos = min(minCos, dot / max(na.squareRoot() * ne.squareRoot(), 1e-300))
            if Classify.topK(a, 1) == Classify.topK(e, 1) { top1 += 1 }
            if Classify.topK(a).sorted() == Classify.topK(e).sorted() { top5 += 1 }
        }
        let n = Double(examples.count)
        let values = ["max_abs_diff": maxDiff, "cosine": minCos, "top1_agreement": Double(top1) / n, "top5_agreement": Double(top5) / n]
        var failures: [String] = []
        for name in toleranceOrder {
            guard let value = values[name], let bound = tolerance[name] else { continue }
            if name == "max_abs_diff" ? value > bound : value < bound {
                failures.append("\(name) \(String(format: "%.3g", value)) \(name == "max_abs_diff" ? ">" : "<") \(bound)")
            }
        }
        return Agreement(maxAbsDiff: maxDiff, cosine: minCos, top1Agreement: Double(top1) / n, top5Agreement: Double(top5) / n,
                         numExamples: examples.count, status: failures.isEmpty ? "passed" : "failed: " + failures.joined(separator: "; "))
    }
}

/// RFC 4648 base64 that accepts what Python's `base64.b64decode(validate=True)` accepts: the standard alphabet,
/// padding at the end, and non-zero bits after the last byte (Foundation's decoder refuses those).
enum Base64 {
    static func decode(_ text: String) -> Data? {
        let bytes = Array(text.utf8)
        guard bytes.count % 4 == 0 else { return nil }
        var end = bytes.count
        while end > 0 && bytes[end - 1] == 0x3D && bytes.count - end < 2 { end -= 1 }
        var out = Data(capacity: end * 3 / 4)
        var buffer: UInt32 = 0, bits = 0
        for k in 0..<end {
            let c = bytes[k]
            let v: UInt32
            switch c {
            case 0x41...0x5A: v = UInt32(c - 0x41)
            case 0x61...0x7A: v = UInt32(c - 0x61 + 26)
            case 0x30...0x39: v = UInt32(c - 0x30 + 52)
            case 0x2B: v = 62
            case 0x2F: v = 63
            default: return nil
            }
            buffer = (buffer << 6 | v) & 0xFFFFFF
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((buffer >> UInt32(bits)) & 0xFF))
            }
        }
        return out
    }
}
