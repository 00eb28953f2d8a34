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
    public let artifact: String
    public let precision: String
    public let outputKind: String
    public let tolerance: [String: Double]
    public let examples: [Example]

    public static func parse(_ data: Data, where place: String = "examples file") throws -> ExampleSet {
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelContractError("\(place) is not a JSON object")
        }
        guard root["schema"] as? String == schema else {
            throw ModelContractError("\(place): 'schema' must be '\(schema)'; re-export the artifact")
        }
        guard let tolerance = root["tolerance"] as? [String: Double] else {
            throw ModelContractError("\(place): 'tolerance' must be an object of numbers")
        }
        guard let list = root["examples"] as? [[String: Any]], !list.isEmpty else {
            throw ModelContractError("\(place): 'examples' must be a non-empty list")
        }
        var examples: [Example] = []
        for (i, e) in list.enumerated() {
            let at = "\(place): examples[\(i)]"
            guard let input = e["input"] as? [String: Any], let output = e["output"] as? [String: Any] else {
                throw ModelContractError("\(at) needs 'input' and 'output' objects")
            }
            guard let top = e["top5"] as? [[String: Any]] else { throw ModelContractError("\(at).top5 must be a list") }
            examples.append(Example(
                source: e["source"] as? String ?? "",
                inputShape: try shape(input, "\(at).input"),
                input: try decode(input, "\(at).input"),
                output: try decode(output, "\(at).output"),
                top5: top.compactMap { $0["index"] as? Int },
                top5Labels: top.map { $0["label"] as? String ?? "" }))
        }
        guard let artifact = root["artifact"] as? String, let precision = root["precision"] as? String else {
            throw ModelContractError("\(place): 'artifact' and 'precision' must be strings")
        }
        let kind = (root["output"] as? [String: Any])?["kind"] as? String ?? "logits"
        return ExampleSet(artifact: artifact, precision: precision, outputKind: kind, tolerance: tolerance, examples: examples)
    }

    static func shape(_ record: [String: Any], _ at: String) throws -> [Int] {
        guard let shape = record["shape"] as? [Int], !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else {
            throw ModelContractError("\(at).shape must be a list of positive integers")
        }
        return shape
    }

    /// A tensor record -> its float32 elements.
    public static func decode(_ record: [String: Any], _ at: String) throws -> [Float] {
        let count = try shape(record, at).reduce(1, *)
        guard let text = record["data"] as? String, let bytes = Data(base64Encoded: text) else {
            throw ModelContractError("\(at).data is not base64")
        }
        switch record["encoding"] as? String {
        case "u8":
            guard let divisor = record["divisor"] as? Int, divisor == 1 || divisor == 255 else {
                throw ModelContractError("\(at).divisor must be 1 or 255")
            }
            guard bytes.count == count else { throw ModelContractError("\(at).data holds \(bytes.count) bytes, the shape needs \(count)") }
            let d = Float(divisor)
            return bytes.map { Float($0) / d }
        case "f32le":
            guard bytes.count == count * 4 else { throw ModelContractError("\(at).data holds \(bytes.count) bytes, the shape needs \(count * 4)") }
            let raw = [UInt8](bytes)
            return (0..<count).map { i in
                let b = i * 4
                let bits = UInt32(raw[b]) | UInt32(raw[b + 1]) << 8 | UInt32(raw[b + 2]) << 16 | UInt32(raw[b + 3]) << 24
                return Float(bitPattern: bits)
            }
        default:
            throw ModelContractError("\(at).encoding must be u8 or f32le")
        }
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
        for (name, bound) in tolerance.sorted(by: { $0.key < $1.key }) {
            guard let value = values[name] else { continue }
            if name == "max_abs_diff" ? value > bound : value < bound {
                failures.append("\(name) \(String(format: "%.3g", value)) \(name == "max_abs_diff" ? ">" : "<") \(bound)")
            }
        }
        return Agreement(maxAbsDiff: maxDiff, cosine: minCos, top1Agreement: Double(top1) / n, top5Agreement: Double(top5) / n,
                         numExamples: examples.count, status: failures.isEmpty ? "passed" : "failed: " + failures.joined(separator: "; "))
    }
}
