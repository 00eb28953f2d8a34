package org.emomobile.core

/** One class of a top-k list: index, name and score (a logit or a probability, as the model returns). */
class Prediction(val index: Int, val label: String, val score: Float, val probability: Float)

object Classify {
    /** Softmax in double precision (max subtracted first, so large logits do not overflow). */
    fun softmax(logits: FloatArray): FloatArray {
        var max = Double.NEGATIVE_INFINITY
        for (v in logits) if (v > max) max = v.toDouble()
        val exps = DoubleArray(logits.size) { Math.exp(logits[it] - max) }
        val sum = exps.sum()
        return FloatArray(logits.size) { (exps[it] / sum).toFloat() }
    }

    /** Indices of the [k] largest scores, best first; equal scores keep the lower index first (as in Python). */
    fun topK(scores: FloatArray, k: Int = 5): IntArray {
        val order = (0 until scores.size).sortedWith(Comparator { a, b ->
            val byScore = scores[b].compareTo(scores[a])
            if (byScore != 0) byScore else a.compareTo(b)
        })
        return order.take(Math.min(k, scores.size)).toIntArray()
    }

    /** Top-k with names and probabilities; [output] is logits or probabilities as the sidecar's output kind says. */
    fun predictions(output: FloatArray, sidecar: Sidecar, k: Int = 5): List<Prediction> {
        require(output.size == sidecar.numClasses) { "the model returned ${output.size} scores, the sidecar says ${sidecar.numClasses}" }
        val probabilities = if (sidecar.outputKind == "probabilities") output else softmax(output)
        return topK(output, k).map { Prediction(it, sidecar.label(it), output[it], probabilities[it]) }
    }
}
