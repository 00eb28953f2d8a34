package org.emomobile.core

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
        const val MAX_BYTES = 256 shl 20
        const val MAX_TENSOR_ELEMENTS = 1L shl 28
        const val FIX = "re-export the artifact with emo-export"
        val ENCODINGS = listOf("u8", "f32le")
        val TOLERANCE_NAMES = listOf("max_abs_diff", "cosine", "top1_agreement", "top5_agreement")

        /**
         * The parity policy (`emo.contract.examples.TOLERANCES`): the tolerances each precision needs, and their
         * bounds; an examples file may be stricter, never looser. A JUnit test compares it with Python's.
         */
        val TOLERANCES: Map<String, Map<String, Double>> = linkedMapOf(
            "fp32" to linkedMapOf("max_abs_diff" to 1e-4),
            "fp16" to linkedMapOf("top1_agreement" to 0.99, "cosine" to 0.999),
            "int8" to linkedMapOf("top1_agreement" to 0.87, "cosine" to 0.99),
            "w8a16" to linkedMapOf("top1_agreement" to 0.87, "cosine" to 0.995)
        )

        /** Tolerance names that bound from above; the others bound from below. */
        val UPPER_BOUNDS = listOf("max_abs_diff")

        fun parse(text: String, where: String = "examples file"): ExampleSet =
            validate(BoundedJson.parse(text, "examples file $where"), where)

        /** Parse and check an examples file's bytes (UTF-8, at most [MAX_BYTES]). */
        fun parse(bytes: ByteArray, where: String = "examples file"): ExampleSet =
            validate(BoundedJson.parse(bytes, "examples file $where", MAX_BYTES, FIX), where)

        /**
         * The examples of a parsed document, or a [ContractException] naming the first wrong field: the schema
         * (`emo/contract/schemas/examples.schema.json`, `schema` first: a file of another kind is refused whole), the
         * tolerance policy, then each tensor's sizes and bytes, and outputs of one size (its x-rules).
         */
        @Suppress("UNCHECKED_CAST")
        fun validate(document: Any?, where: String): ExampleSet {
            val c = Check("examples file $where", FIX)
            val root = c.root(document)
            if (!root.containsKey("schema")) throw c.missing("schema", "schema")
            if (root["schema"] != SCHEMA) throw c.wrong("schema", "schema", "'$SCHEMA'", root["schema"])
            c.require(root, "", listOf("schema", "precision", "tolerance", "examples"))
            for ((key, value) in root) {
                when (key) {
                    "artifact" -> c.string(key, value, 0, 255, "the artifact's file name")
                    "artifact_sha256" -> c.sha256(key, value)
                    "precision" -> c.enumOf(key, value, Vocabulary.PRECISIONS)
                    "tolerance" -> {
                        val expected = "one of the tolerance names ${TOLERANCE_NAMES.joinToString()}"
                        val tolerance = c.obj(key, value, expected)
                        val unknown = tolerance.keys.filter { it !in TOLERANCE_NAMES }.sorted()
                        if (unknown.isNotEmpty()) throw c.wrong("tolerance.${unknown[0]}", "enum", expected, unknown[0])
                        if (tolerance.isEmpty()) throw c.wrong("tolerance", "length", expected, tolerance)
                        for ((name, bound) in tolerance) {
                            if (name == "max_abs_diff") c.number("tolerance.$name", bound, 0.0, 1e6, "a number in 0..1e6")
                            else c.number("tolerance.$name", bound, 0.0, 1.0, "a number in 0..1")
                        }
                    }
                    "examples" -> c.array(key, value, 1, 16, "a list of 1..16 examples").forEachIndexed { i, e ->
                        checkExample(c, "examples[$i]", e)
                    }
                }
            }
            val precision = root["precision"] as String?
            val tolerance = LinkedHashMap<String, Double>()
            for ((name, bound) in root["tolerance"] as Map<String, Any?>) tolerance[name] = bound as Double
            for ((name, bound) in TOLERANCES[precision] ?: emptyMap<String, Double>()) {
                val value = tolerance[name] ?: throw c.fail("tolerance.$name", "required",
                    "is missing (the $precision policy needs it)")
                val upper = name in UPPER_BOUNDS
                if (if (upper) value > bound else value < bound) {
                    throw c.fail("tolerance.$name", "range", "must not be looser than the $precision policy " +
                        "(${if (upper) "<=" else ">="} $bound), not $value")
                }
            }
            val examples = ArrayList<Example>()
            for ((i, item) in (root["examples"] as List<Any?>).withIndex()) {
                val e = item as Map<String, Any?>
                val input = e["input"] as Map<String, Any?>
                val decodedInput = decodeChecked(c, "examples[$i].input", input)
                val output = decodeChecked(c, "examples[$i].output", e["output"] as Map<String, Any?>)
                if (examples.isNotEmpty() && output.size != examples[0].output.size) {
                    throw c.fail("examples[$i].output.shape", "mismatch", "must have ${examples[0].output.size} " +
                        "elements like examples[0].output")
                }
                val top = e["top5"] as List<Any?>
                examples.add(Example(
                    source = e["source"] as String? ?: "",
                    inputShape = (input["shape"] as List<Any?>).map { (it as Double).toInt() }.toIntArray(),
                    input = decodedInput,
                    output = output,
                    top5 = top.map { ((it as Map<String, Any?>)["index"] as Double).toInt() }.toIntArray(),
                    top5Labels = top.map { (it as Map<String, Any?>)["label"] as? String ?: "" }
                ))
            }
            val kind = (root["output"] as? Map<String, Any?>)?.get("kind") as? String
            return ExampleSet(root["artifact"] as String? ?: "", precision ?: "",
                if (kind in Vocabulary.OUTPUT_KINDS) kind!! else "logits", tolerance, examples)
        }

        private fun checkExample(c: Check, path: String, value: Any?) {
            val example = c.obj(path, value)
            c.require(example, path, listOf("input", "output", "top5"))
            for ((key, v) in example) {
                when (key) {
                    "source" -> c.string("$path.source", v, 0, 255, "a string")
                    "input", "output" -> checkTensor(c, "$path.$key", v)
                    "top5" -> c.array("$path.top5", v, 0, 5, "a list of at most 5 classes").forEachIndexed { k, item ->
                        val entry = c.obj("$path.top5[$k]", item, "an object with an 'index'")
                        c.require(entry, "$path.top5[$k]", listOf("index"))
                        c.integer("$path.top5[$k].index", entry["index"], 0.0, 99999.0, "a class index")
                    }
                }
            }
        }

        /** A tensor record as the schema's `$defs.tensor` says (sizes and bytes are checked when decoding). */
        private fun checkTensor(c: Check, path: String, value: Any?) {
            val record = c.obj(path, value, "a tensor record (shape, encoding, data)")
            c.require(record, path, listOf("shape", "encoding", "data"))
            if (record["encoding"] == "u8" && !record.containsKey("divisor")) throw c.missing("$path.divisor")
            for ((key, v) in record) {
                val field = "$path.$key"
                when (key) {
                    "shape" -> c.array(field, v, 1, 8, "a list of 1..8 positive sizes").forEachIndexed { k, d ->
                        c.integer("$field[$k]", d, 1.0, MAX_TENSOR_ELEMENTS.toDouble(), "a positive size")
                    }
                    "dtype" -> c.enumOf(field, v, listOf("float32"), "'float32'")
                    "encoding" -> c.enumOf(field, v, ENCODINGS)
                    "divisor" -> if (!(v is Double && (v == 1.0 || v == 255.0))) throw c.wrong(field, "enum", "1 or 255", v)
                    "data" -> c.string(field, v, 0, 1431655768, "base64 text") { Check.isBase64(it) }
                }
            }
        }

        /** A tensor record -> its float32 elements (row-major), after the element-count and byte-count rules. */
        @Suppress("UNCHECKED_CAST")
        private fun decodeChecked(c: Check, path: String, record: Map<String, Any?>): FloatArray {
            val shape = (record["shape"] as List<Any?>).map { (it as Double).toLong() }
            var count = 1L
            for (d in shape) {
                count *= d
                if (count > MAX_TENSOR_ELEMENTS) {
                    throw c.fail("$path.shape", "range", "must have at most $MAX_TENSOR_ELEMENTS elements, not $shape")
                }
            }
            val u8 = record["encoding"] == "u8"
            val bytes = count * (if (u8) 1 else 4)
            val data = record["data"] as String
            val needs = "must hold $bytes bytes for shape $shape in ${record["encoding"]}"
            if (data.length.toLong() != 4 * ((bytes + 2) / 3)) throw c.fail("$path.data", "length", needs)
            val raw = try {
                Base64.decode(data, path)
            } catch (e: ModelContractException) {
                throw c.fail("$path.data", "format", "must be base64 text")
            }
            if (raw.size.toLong() != bytes) throw c.fail("$path.data", "length", "$needs, not ${raw.size}")
            if (u8) {
                val d = (record["divisor"] as Double).toFloat()
                return FloatArray(raw.size) { (raw[it].toInt() and 0xff).toFloat() / d }
            }
            return FloatArray(count.toInt()) {
                val b = it * 4
                val bits = (raw[b].toInt() and 0xff) or ((raw[b + 1].toInt() and 0xff) shl 8) or
                    ((raw[b + 2].toInt() and 0xff) shl 16) or ((raw[b + 3].toInt() and 0xff) shl 24)
                java.lang.Float.intBitsToFloat(bits)
            }
        }

        /** A tensor record (a parsed JSON object, as in an examples file) -> its float32 elements, checked. */
        fun decode(record: Any?, where: String): FloatArray {
            val c = Check(where, FIX)
            checkTensor(c, "tensor", record)
            @Suppress("UNCHECKED_CAST")
            return decodeChecked(c, "tensor", record as Map<String, Any?>)
        }
    }
}

/** RFC 4648 base64 (standard alphabet, padding optional); here so the core needs neither java.util.Base64
 * (Android API 26+) nor android.util.Base64. */
object Base64 {
    private val VALUES = IntArray(128) { -1 }.also { table ->
        val alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        for (i in alphabet.indices) table[Check.code(alphabet[i])] = i
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
            val c = Check.code(text[i])
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
