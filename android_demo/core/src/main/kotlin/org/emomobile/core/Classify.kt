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

/** What the screen shows, decided here so the UI only displays strings. */
object Texts {
    /** The status line of a model just opened: its name, what ran, and its self-test verdict when it has examples. */
    fun opened(title: String, opened: OpenedModel): String {
        val parity = opened.probe.parity
        return "$title on ${opened.ran}" + if (parity == null) "" else "; self-test ${parity.status}"
    }

    /**
     * [what] failed because of [e], in one line. An `OutOfMemoryError` (an `Error`, not an `Exception`: the screen
     * catches `Throwable` so that a photo too large for the app's heap is a message, not a dead app) says so.
     */
    fun failure(what: String, e: Throwable): String = if (e is OutOfMemoryError) {
        "$what: out of memory (the image is too large for the memory this phone gives the app)"
    } else {
        "$what: ${Benchmark.reason(e)}"
    }

    /** Top-5 lines (label and probability), then the latency and what ran. */
    fun predictions(predictions: List<Prediction>, millis: Double, ran: String): String =
        predictions.joinToString("\n") { String.format(java.util.Locale.ROOT, "%-28s %.3f", it.label, it.probability) } +
            String.format(java.util.Locale.ROOT, "\n%.2f ms on %s", millis, ran)

    /** The self-test's verdict with its numbers (an fp32 artifact on an fp16 GPU fails max |diff| and keeps top-1). */
    fun selfTest(agreement: Agreement?, artifact: String, ran: String): String {
        if (agreement == null) return "no examples file next to $artifact: re-export it with emo-export"
        return String.format(java.util.Locale.ROOT,
            "self-test on %d examples (%s): %s\nmax |diff| %.2e, cosine %.6f, top-1 %.0f%%, top-5 %.0f%%",
            agreement.numExamples, ran, agreement.status, agreement.maxAbsDiff, agreement.cosine,
            agreement.top1Agreement * 100, agreement.top5Agreement * 100)
    }
}
