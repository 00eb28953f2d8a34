package org.emomobile.core

import org.json.JSONException
import org.json.JSONObject

/** One bundled example: the photo it came from, the exact input tensor (batch 1), PyTorch's output and top-5. */
class Example(
    val source: String,
    val inputShape: IntArray,
    val input: FloatArray,
    val output: FloatArray,
    val top5: IntArray,
    val top5Labels: List<String>
)

/** How far a runtime's outputs are from PyTorch's on the bundled examples, judged by the file's tolerance. */
class Agreement(
    val maxAbsDiff: Double,
    val cosine: Double,
    val top1Agreement: Double,
    val top5Agreement: Double,
    val numExamples: Int,
    val status: String
) {
    val passed: Boolean get() = status == "passed"
}

/**
 * `{stem}.examples.json` (schema `emo-mobile/examples/1`), written by `emo-export` next to every artifact and read by
 * the Python tools, this core, the Swift core and the apps' self-test screens. Tensors are base64:
 * `"u8"`: one byte per element, value = float32(byte) / float32(divisor); `"f32le"`: IEEE float32 little-endian.
 */
class ExampleSet(
    val artifact: String,
    val precision: String,
    val outputKind: String,
    val tolerance: Map<String, Double>,
    val examples: List<Example>
) {
    /** Compare [outputs] (one per example, in order) with the expected outputs, as `emo.runtime_bench.examples`. */
    fun agreement(outputs: List<FloatArray>): Agreement {
        if (outputs.size != examples.size || outputs.indices.any { outputs[it].size != examples[it].output.size }) {
            return Agreement(Double.NaN, Double.NaN, 0.0, 0.0, examples.size,
                "failed: ${outputs.size} outputs do not match the ${examples.size} expected outputs")
        }
        if (outputs.any { o -> o.any { it.isNaN() || it.isInfinite() } }) {
            return Agreement(Double.NaN, Double.NaN, 0.0, 0.0, examples.size, "failed: non-finite outputs")
        }
        var maxDiff = 0.0
        var minCos = 1.0
        var top1 = 0
        var top5 = 0
        for (i in examples.indices) {
            val a = outputs[i]
            val e = examples[i].output
            var dot = 0.0
            var na = 0.0
            var ne = 0.0
            for (j in a.indices) {
                maxDiff = Math.max(maxDiff, Math.abs(a[j].toDouble() - e[j].toDouble()))
                dot += a[j].toDouble() * e[j]
                na += a[j].toDouble() * a[j]
                ne += e[j].toDouble() * e[j]
            }
            minCos = Math.min(minCos, dot / Math.max(Math.sqrt(na) * Math.sqrt(ne), 1e-300))
            if (Classify.topK(a, 1)[0] == Classify.topK(e, 1)[0]) top1++
            if (Classify.topK(a).sorted() == Classify.topK(e).sorted()) top5++
        }
        val n = examples.size.toDouble()
        val values = mapOf("max_abs_diff" to maxDiff, "cosine" to minCos, "top1_agreement" to top1 / n,
            "top5_agreement" to top5 / n)
        val failures = ArrayList<String>()
        for ((name, bound) in tolerance) {
            val value = values[name] ?: continue
            if (name == "max_abs_diff" && value > bound) failures.add("$name ${fmt(value)} > $bound")
            if (name != "max_abs_diff" && value < bound) failures.add("$name ${fmt(value)} < $bound")
        }
        val status = if (failures.isEmpty()) "passed" else "failed: " + failures.joinToString("; ")
        return Agreement(maxDiff, minCos, top1 / n, top5 / n, examples.size, status)
    }

    private fun fmt(v: Double): String = String.format(java.util.Locale.ROOT, "%.3g", v)

    companion object {
        const val SCHEMA = "emo-mobile/examples/1"

        fun parse(text: String, where: String = "examples file"): ExampleSet {
            val root = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw ModelContractException("$where is not a JSON object: ${e.message}")
            }
            if (root.optString("schema") != SCHEMA) {
                throw ModelContractException("$where: 'schema' must be '$SCHEMA', not '${root.optString("schema").take(40)}'; re-export the artifact")
            }
            val f = Fields(root, where)
            val tol = f.obj("tolerance")
            val tolerance = LinkedHashMap<String, Double>()
            for (key in tol.keys()) tolerance[key] = tol.getDouble(key)
            val list = root.optJSONArray("examples")
            if (list == null || list.length() == 0) throw ModelContractException("$where: 'examples' must be a non-empty list")
            val examples = ArrayList<Example>()
            for (i in 0 until list.length()) {
                val e = list.optJSONObject(i) ?: throw ModelContractException("$where: examples[$i] must be an object")
                val input = Fields(e, "$where: examples[$i]").obj("input")
                val top = e.optJSONArray("top5") ?: throw ModelContractException("$where: examples[$i].top5 must be a list")
                examples.add(Example(
                    source = e.optString("source"),
                    inputShape = shapeOf(input, "$where: examples[$i].input"),
                    input = decode(input, "$where: examples[$i].input"),
                    output = decode(Fields(e, "$where: examples[$i]").obj("output"), "$where: examples[$i].output"),
                    top5 = IntArray(top.length()) { top.getJSONObject(it).getInt("index") },
                    top5Labels = (0 until top.length()).map { top.getJSONObject(it).optString("label") }
                ))
            }
            val output = root.optJSONObject("output")
            return ExampleSet(f.string("artifact"), f.string("precision"), output?.optString("kind", "logits") ?: "logits",
                tolerance, examples)
        }

        private fun shapeOf(record: JSONObject, where: String): IntArray {
            val shape = record.optJSONArray("shape") ?: throw ModelContractException("$where.shape must be a list")
            return IntArray(shape.length()) {
                val d = shape.opt(it)
                if (d !is Int || d < 1) throw ModelContractException("$where.shape must hold positive integers")
                d
            }
        }

        /** A tensor record -> its float32 elements (row-major). */
        fun decode(record: JSONObject, where: String): FloatArray {
            val count = shapeOf(record, where).fold(1L) { acc, d -> acc * d }
            val bytes = Base64.decode(record.optString("data"), where)
            return when (record.optString("encoding")) {
                "u8" -> {
                    val divisor = record.optInt("divisor", 0)
                    if (divisor != 1 && divisor != 255) throw ModelContractException("$where.divisor must be 1 or 255")
                    if (bytes.size.toLong() != count) throw ModelContractException("$where.data holds ${bytes.size} bytes, the shape needs $count")
                    val d = divisor.toFloat()
                    FloatArray(bytes.size) { (bytes[it].toInt() and 0xff).toFloat() / d }
                }
                "f32le" -> {
                    if (bytes.size.toLong() != count * 4) throw ModelContractException("$where.data holds ${bytes.size} bytes, the shape needs ${count * 4}")
                    FloatArray(count.toInt()) {
                        val b = it * 4
                        val bits = (bytes[b].toInt() and 0xff) or ((bytes[b + 1].toInt() and 0xff) shl 8) or
                            ((bytes[b + 2].toInt() and 0xff) shl 16) or ((bytes[b + 3].toInt() and 0xff) shl 24)
                        java.lang.Float.intBitsToFloat(bits)
                    }
                }
                else -> throw ModelContractException("$where.encoding must be u8 or f32le, not '${record.optString("encoding").take(20)}'")
            }
        }
    }
}

/** RFC 4648 base64 (standard alphabet, padding optional); here so the core needs neither java.util.Base64
 * (Android API 26+) nor android.util.Base64. */
object Base64 {
    private val VALUES = IntArray(128) { -1 }.also { table ->
        val alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        for (i in alphabet.indices) table[alphabet[i].toInt()] = i
    }

    fun decode(text: String, where: String = "data"): ByteArray {
        var end = text.length
        while (end > 0 && text[end - 1] == '=') end--
        if (text.length - end > 2 || end % 4 == 1) throw ModelContractException("$where.data is not base64")
        val out = ByteArray(end * 3 / 4)
        var buffer = 0
        var bits = 0
        var o = 0
        for (i in 0 until end) {
            val c = text[i].toInt()
            val v = if (c < 128) VALUES[c] else -1
            if (v < 0) throw ModelContractException("$where.data is not base64 (character ${i + 1})")
            buffer = (buffer shl 6) or v
            bits += 6
            if (bits >= 8) {
                bits -= 8
                out[o++] = ((buffer shr bits) and 0xff).toByte()
            }
        }
        return out
    }
}
