package org.emomobile.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** A sidecar (or examples file) that this app cannot use; the message names the file and the field. */
class ModelContractException(message: String) : Exception(message)

/** ImageNet-style normalisation; applied by the app only when the graph does not do it ([inGraph] false). */
class Normalization(val mean: FloatArray, val std: FloatArray, val inGraph: Boolean)

/**
 * The element type of one end of the graph. A full-integer artifact (`int8`, `uint8`) takes and returns quantized
 * values: real = ([q] - [zeroPoint]) * [scale] (the sidecar's `quantization.io`, read from the TFLite model by
 * `emo-export`); a `float32` end has scale 1 and zero point 0 and is passed through.
 */
class TensorSpec(val dtype: String, val scale: Float, val zeroPoint: Int) {
    val quantized: Boolean get() = dtype != "float32"

    companion object {
        val FLOAT32 = TensorSpec("float32", 1f, 0)
        val DTYPES = listOf("float32", "int8", "uint8")

        /** The range of a quantized value of [dtype]. */
        fun range(dtype: String): IntArray = if (dtype == "uint8") intArrayOf(0, 255) else intArrayOf(-128, 127)
    }
}

/**
 * The contract `emo-export` writes next to every artifact (`{stem}.json`, schema `emo-mobile/sidecar/1`):
 * what the graph takes (layout, size, range, normalisation) and returns (logits or probabilities), and the labels.
 * The app reads it instead of copying constants by hand: dropping an artifact and its sidecar into `assets/` is all
 * it takes to add a model.
 */
class Sidecar(
    val variant: String,
    val backend: String,
    val precision: String,
    val file: String,
    val inputName: String,
    /** "NCHW", "NHWC" or "image" (a Core ML ImageType: pixels 0..255, NCHW order in the examples file). */
    val layout: String,
    /** Static batch, or 0 for a symbolic ("batch") dimension. */
    val batch: Int,
    val height: Int,
    val width: Int,
    val normalization: Normalization,
    val outputName: String,
    /** "logits" or "probabilities". */
    val outputKind: String,
    val numClasses: Int,
    val labels: List<String>,
    val examplesFile: String?,
    /** The graph's input element type (and its quantization), float32 unless `quantization.io` says otherwise. */
    val inputSpec: TensorSpec = TensorSpec.FLOAT32,
    /** The graph's output element type (and its quantization). */
    val outputSpec: TensorSpec = TensorSpec.FLOAT32
) {
    /** Elements of one image's input tensor (batch 1). */
    val inputSize: Int get() = 3 * height * width

    /** The name of class [index]: its label, or the index itself for a model exported without labels. */
    fun label(index: Int): String = if (index < labels.size) labels[index] else index.toString()

    companion object {
        val LAYOUTS = listOf("NCHW", "NHWC", "image")
        val OUTPUT_KINDS = listOf("logits", "probabilities")

        /** Parse and check a sidecar's JSON text; [where] names it in errors (usually the file name). */
        fun parse(text: String, where: String = "sidecar"): Sidecar {
            val root = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw ModelContractException("$where is not a JSON object: ${e.message}")
            }
            val f = Fields(root, where)
            val input = f.obj("input")
            val inputFields = Fields(input, "$where: input")
            val layout = inputFields.string("layout", "NCHW")
            if (layout !in LAYOUTS) throw fail(where, "input.layout", "one of ${LAYOUTS.joinToString()}", layout)
            val shape = input.optJSONArray("shape") ?: throw fail(where, "input.shape", "a list of 4", input.opt("shape"))
            if (shape.length() != 4) throw fail(where, "input.shape", "a list of 4", shape)
            val batch = if (shape.opt(0) == "batch") 0 else positive(shape, 0, where)
            val dims = IntArray(3) { positive(shape, it + 1, where) }
            val channels = if (layout == "NHWC") dims[2] else dims[0]
            if (channels != 3) throw fail(where, "input.shape", "RGB (3 channels in $layout)", shape)
            val height = if (layout == "NHWC") dims[0] else dims[1]
            val width = if (layout == "NHWC") dims[1] else dims[2]
            val norm = inputFields.obj("normalization")
            if (!norm.has("in_graph") || norm.opt("in_graph") !is Boolean) {
                throw fail(where, "input.normalization.in_graph", "a boolean", norm.opt("in_graph"))
            }
            val mean = triple(norm, "mean", where)
            val std = triple(norm, "std", where)
            if (std.any { it <= 0f }) throw fail(where, "input.normalization.std", "3 numbers > 0", norm.opt("std"))
            val output = f.obj("output")
            val kind = Fields(output, "$where: output").string("kind", "logits")
            if (kind !in OUTPUT_KINDS) throw fail(where, "output.kind", "one of ${OUTPUT_KINDS.joinToString()}", kind)
            val outShape = output.optJSONArray("shape")
            val numClasses = when {
                root.has("num_classes") -> root.optInt("num_classes", -1)
                outShape != null && outShape.length() == 2 -> outShape.optInt(1, -1)
                else -> -1
            }
            if (numClasses < 1) throw fail(where, "num_classes", "a positive integer", root.opt("num_classes"))
            val labels = ArrayList<String>()
            val labelsObj = root.optJSONObject("labels")
            if (labelsObj != null) {
                val names = labelsObj.optJSONArray("names") ?: throw fail(where, "labels.names", "a list of strings", null)
                for (i in 0 until names.length()) {
                    labels.add(names.opt(i) as? String ?: throw fail(where, "labels.names", "a list of strings", names.opt(i)))
                }
                if (labels.size != numClasses) throw fail(where, "labels.names", "$numClasses names", labels.size)
            }
            return Sidecar(
                variant = f.string("variant"), backend = f.string("backend"), precision = f.string("precision"),
                file = f.string("file"), inputName = inputFields.string("name", "image"), layout = layout,
                batch = batch, height = height, width = width, normalization = Normalization(mean, std, norm.getBoolean("in_graph")),
                outputName = Fields(output, "$where: output").string("name", "logits"), outputKind = kind,
                numClasses = numClasses, labels = labels,
                examplesFile = if (root.has("examples")) f.string("examples") else null,
                inputSpec = ioSpec(root, "input", where), outputSpec = ioSpec(root, "output", where)
            )
        }

        /** `quantization.io.{end}` of a full-integer artifact, else float32 (no `quantization`, or no `io` in it). */
        private fun ioSpec(root: JSONObject, end: String, where: String): TensorSpec {
            val io = root.optJSONObject("quantization")?.optJSONObject("io") ?: return TensorSpec.FLOAT32
            val field = "quantization.io.$end"
            val spec = io.optJSONObject(end) ?: throw fail(where, field, "an object {dtype, scale, zero_point}", io.opt(end))
            val dtype = spec.opt("dtype")
            if (dtype !is String || dtype !in TensorSpec.DTYPES) {
                throw fail(where, "$field.dtype", "one of ${TensorSpec.DTYPES.joinToString()}", dtype)
            }
            if (dtype == "float32") return TensorSpec.FLOAT32
            val scale = spec.opt("scale")
            if (scale !is Number || !(scale.toDouble() > 0.0) || scale.toDouble().isInfinite()) {
                throw fail(where, "$field.scale", "a finite number > 0", scale)
            }
            val zero = spec.opt("zero_point")
            val range = TensorSpec.range(dtype)
            if (zero !is Int || zero < range[0] || zero > range[1]) {
                throw fail(where, "$field.zero_point", "an integer in [${range[0]}, ${range[1]}]", zero)
            }
            return TensorSpec(dtype, scale.toFloat(), zero)
        }

        private fun positive(shape: JSONArray, i: Int, where: String): Int {
            val v = shape.opt(i)
            if (v !is Int || v < 1 || v > 16384) throw fail(where, "input.shape", "4 positive sizes", shape)
            return v
        }

        private fun triple(norm: JSONObject, key: String, where: String): FloatArray {
            val values = norm.optJSONArray(key)
            if (values == null || values.length() != 3 || (0 until 3).any { values.opt(it) !is Number }) {
                throw fail(where, "input.normalization.$key", "3 numbers", norm.opt(key))
            }
            return FloatArray(3) { (values.get(it) as Number).toFloat() }
        }

        internal fun fail(where: String, field: String, expected: String, value: Any?): ModelContractException {
            val shown = value.toString().take(60)
            return ModelContractException("$where: field '$field' must be $expected, not $shown; re-export the artifact")
        }
    }
}

/** Typed access to one JSON object's fields with errors that name the file and the field. */
internal class Fields(private val json: JSONObject, private val where: String) {
    fun obj(name: String): JSONObject =
        json.optJSONObject(name) ?: throw ModelContractException("$where: field '$name' must be an object; re-export the artifact")

    fun string(name: String, default: String? = null): String {
        val v: Any? = json.opt(name)
        if (v == null && default != null) return default
        if (v !is String || v.length == 0) {
            throw ModelContractException("$where: field '$name' must be a non-empty string, not ${v.toString().take(60)}; re-export the artifact")
        }
        return v
    }
}
