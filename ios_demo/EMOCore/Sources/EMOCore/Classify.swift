import Foundation

public struct Prediction {
    public let index: Int
    public let label: String
    /// A logit or a probability, as the model returns.
    public let score: Float
    public let probability: Float
}

public enum Classify {
    /// Softmax in double precision, max subtracted first.
    public static func softmax(_ logits: [Float]) -> [Float] {
        let m = Double(logits.max() ?? 0)
        let exps = logits.map { Foundation.exp(Double($0) - m) }
        let sum = exps.reduce(0, +)
        return exps.map { Float($0 / sum) }
    }

    /// Indices of the `k` largest scores, best first; equal scores keep the lower index first (as in Python).
    public static func topK(_ scores: [Float], _ k: Int = 5) -> [Int] {
        let order = scores.indices.sorted { a, b in scores[a] != scores[b] ? scores[a] > scores[b] : a < b }
        return Array(order.prefix(k))
    }

    /// Top-k with names and probabilities; `output` is logits or probabilities as the sidecar's output kind says.
    public static func predictions(_ output: [Float], sidecar: Sidecar, k: Int = 5) throws -> [Prediction] {
        guard output.count == sidecar.numClasses else {
            throw ModelContractError("the model returned \(output.count) scores, the sidecar says \(sidecar.numClasses); re-export the artifact")
        }
        let probabilities = sidecar.outputKind == "probabilities" ? output : softmax(output)
        return topK(output, k).map { Prediction(index: $0, label: sidecar.label($0), score: output[$0], probability: probabilities[$0]) }
    }
}
