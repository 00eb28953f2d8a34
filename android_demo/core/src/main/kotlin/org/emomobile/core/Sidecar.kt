package org.emomobile.core

/** A sidecar, an examples file or a model this app cannot use; the message names the file and the field.
 * [ContractException] is the reader's kind, with the field and the reason of the conformance vectors. */
open class ModelContractException(message: String) : Exception(message)

/** ImageNet-style normalisation; applied by the app only when the graph does not do it ([inGraph] false). */
class Normalization(val mean: FloatArray, val std: FloatArray, val inGraph: Boolean)

/**
 * How a photo becomes the input (`input.preprocessing`): resize the shorter side to `int(max(H, W) / cropPct)` with
 * [interpolation], then centre-crop H x W. A sidecar without the block (older exports) means the authors' eval
 * transform, crop fraction 0.875 (`emo.contract.sidecar.CROP_PCT`).
 */
class Preprocessing(val cropPct: Double = CROP_PCT, val interpolation: String = "bicubic", val resize: String = "shorter-side") {
    companion object {
        const val CROP_PCT = 0.875
    }
}

/**
 * The element type of one end of the graph. A full-integer artifact (`int8`, `uint8`) takes and returns quantized
 * values: real = ([q] - [zeroPoint]) * [scale] (the sidecar's `quantization.io`, read from the TFLite model by
 * `emo-export`); a `float32` end has scale 1 and zero point 0 and is passed through.
 */
class TensorSpec(val dtype: String, val scale: Float, val zeroPoint: Int) {
    val quantized: Boolean get() = dtype != "float32"

    companion object {
        val FLOAT32 = TensorSpec("float32", 1f, 0)

        /** The element types a sidecar's `quantization.io` may name (the schema's `$defs.quantized_io.dtype`). */
        val DTYPES = listOf("int8", "uint8", "int16", "float32")

        /** The element types the Android app feeds and reads (one byte per quantized value). */
        val APP_DTYPES = listOf("float32", "int8", "uint8")

        /** The range of a quantized value of [dtype]. */
        fun range(dtype: String): IntArray = when (dtype) {
            "uint8" -> intArrayOf(0, 255)
            "int16" -> intArrayOf(-32768, 32767)
            else -> intArrayOf(-128, 127)
        }
    }
}

/**
 * The contract `emo-export` writes next to every artifact (`{stem}.json`, schema `emo-mobile/sidecar/1`): what the
 * graph takes (layout, size, range, normalisation, crop fraction) and returns (logits or probabilities), and the
 * labels. The app reads it instead of copying constants by hand: dropping an artifact and its sidecar into `assets/` is
 * all it takes to add a model. [parse] is the contract's validator (`emo.contract.sidecar`, JSON Schema
 * `emo/contract/schemas/sidecar.schema.json` and its x-rules), checked against the conformance vectors.
 */
class Sidecar(
    val variant: String,
    val backend: String,
    val precision: String,
    val file: String,
    val sha256: String,
    val sizeBytes: Long?,
    val inputName: String,
    /** "NCHW", "NHWC" or "image" (a Core ML ImageType: pixels 0..255, NCHW order in the examples file). */
    val layout: String,
    /** Static batch, or 0 for a symbolic ("batch") dimension. */
    val batch: Int,
    val height: Int,
    val width: Int,
    val normalization: Normalization,
    val preprocessing: Preprocessing,
    val outputName: String,
    /** "logits" or "probabilities". */
    val outputKind: String,
    val numClasses: Int,
    /** The class names (empty for a model exported without labels). */
    val labels: List<String>,
    val examplesFile: String?,
    /** The graph's input element type (and its quantization), float32 unless `quantization.io` says otherwise. */
    val inputSpec: TensorSpec = TensorSpec.FLOAT32,
    /** The graph's output element type (and its quantization). */
    val outputSpec: TensorSpec = TensorSpec.FLOAT32,
    /** An NPU-compiled artifact (litert-npu): the SoC it was compiled for (`backend_info.target.soc_model`). */
    val npuSocModel: String? = null
) {
    /** Elements of one image's input tensor (batch 1). */
    val inputSize: Int get() = 3 * height * width

    /** The name of class [index]: its label, or "class N" for a model exported without labels (as every reader). */
    fun label(index: Int): String = if (index >= 0 && index < labels.size) labels[index] else "class $index"

    companion object {
        const val SCHEMA = "emo-mobile/sidecar/1"
        const val MAX_BYTES = 16 shl 20
        /** batch x 3 x H x W: what a reader may allocate for one input (`emo.contract.sidecar.MAX_INPUT_ELEMENTS`). */
        const val MAX_INPUT_ELEMENTS = 1L shl 28
        const val FIX = "re-export the artifact with emo-export"
        val REQUIRED = listOf("schema", "variant", "backend", "precision", "file", "sha256", "num_classes", "weights",
            "input", "output")

        /** Parse and check a sidecar's JSON text; [where] names it in errors (usually the file name). */
        fun parse(text: String, where: String = "sidecar"): Sidecar = validate(BoundedJson.parse(text, "sidecar $where"), where)

        /** Parse and check a sidecar file's bytes (UTF-8, at most [MAX_BYTES]). */
        fun parse(bytes: ByteArray, where: String = "sidecar"): Sidecar =
            validate(BoundedJson.parse(bytes, "sidecar $where", MAX_BYTES, FIX), where)

        /** The [Sidecar] of a parsed document, or a [ContractException] naming the first wrong field. */
        fun validate(document: Any?, where: String): Sidecar {
            val c = Check("sidecar $where", FIX)
            val root = c.root(document)
            if (!root.containsKey("schema")) throw c.missing("schema", "schema")
            c.require(root, "", REQUIRED)
            for ((key, value) in root) {
                when (key) {
                    "schema" -> if (value != SCHEMA) {
                        throw c.wrong("schema", "schema", "'$SCHEMA' (a sidecar this version reads)", value)
                    }
                    "variant" -> c.enumOf(key, value, Vocabulary.VARIANTS)
                    "backend" -> c.enumOf(key, value, Vocabulary.FORMATS.map { it.name },
                        "a format emo-export writes (see emo/contract/vocabulary.json)")
                    "precision" -> c.enumOf(key, value, Vocabulary.PRECISIONS)
                    "file" -> c.string(key, value, 1, 255, "the artifact's own file name (no folder)") { Check.isFileName(it) }
                    "sha256" -> c.sha256(key, value)
                    "size_bytes" -> c.integer(key, value, 1.0, 1099511627776.0, "the artifact's size in bytes")
                    "num_classes" -> c.integer(key, value, 1.0, 100000.0, "an integer in 1..100000")
                    "weights" -> checkWeights(c, value)
                    "input" -> checkInput(c, value)
                    "output" -> checkOutput(c, value)
                    "labels" -> checkLabels(c, value)
                    "examples" -> c.string(key, value, 15, 255, "the examples file's name ({stem}.examples.json, no folder)") {
                        it.endsWith(Vocabulary.EXAMPLES_SUFFIX) && Check.isFileName(it)
                    }
                    "quantization" -> checkQuantization(c, value)
                    "parity" -> {
                        val parity = c.obj(key, value)
                        if (parity.containsKey("status")) c.string("parity.status", parity["status"], 0, Int.MAX_VALUE, "a string")
                    }
                }
            }
            return build(c, root)
        }

        private fun checkWeights(c: Check, value: Any?) {
            val weights = c.obj("weights", value)
            if (weights["random_init"] == true) {
                if (weights.containsKey("seed")) {
                    c.integer("weights.seed", weights["seed"], 0.0, 4294967295.0, "an integer in 0..4294967295")
                }
                return
            }
            c.require(weights, "weights", listOf("path", "sha256"))
            for ((key, v) in weights) {
                when (key) {
                    "path" -> c.string("weights.path", v, 1, 4096, "the checkpoint's path (or 'random_init': true)") { s ->
                        s.none { Check.isC0OrDel(it) }
                    }
                    "sha256" -> c.sha256("weights.sha256", v)
                    "ema" -> c.bool("weights.ema", v)
                }
            }
        }

        /** A batch: "batch" (symbolic) or 1..1024 (`anyOf`: the branch of the value's JSON type decides the reason). */
        private fun checkBatch(c: Check, field: String, value: Any?) {
            val expected = "a batch of 1..1024 or \"batch\""
            when (value) {
                is String -> if (value != "batch") throw c.wrong(field, "enum", expected, value)
                is Double -> c.integer(field, value, 1.0, 1024.0, expected)
                else -> throw c.wrong(field, "type", expected, value)
            }
        }

        private fun checkInput(c: Check, value: Any?) {
            val input = c.obj("input", value)
            c.require(input, "input", listOf("shape", "normalization"))
            for ((key, v) in input) {
                when (key) {
                    "name" -> c.string("input.name", v, 1, 256, "the graph's input name")
                    "shape" -> {
                        val shape = c.array("input.shape", v, 4, 4, "[batch, ...] with 4 sizes")
                        checkBatch(c, "input.shape[0]", shape[0])
                        for (k in 1..3) c.integer("input.shape[$k]", shape[k], 1.0, 4096.0, "a size in 1..4096")
                    }
                    "layout" -> c.enumOf("input.layout", v, Vocabulary.LAYOUTS)
                    "normalization" -> {
                        val norm = c.obj("input.normalization", v, "an object with a boolean 'in_graph'")
                        c.require(norm, "input.normalization", listOf("in_graph", "mean", "std"))
                        for ((name, x) in norm) {
                            val field = "input.normalization.$name"
                            when (name) {
                                "in_graph" -> c.bool(field, x)
                                "mean" -> c.array(field, x, 3, 3, "3 numbers").forEachIndexed { k, m ->
                                    c.number("$field[$k]", m, -1000.0, 1000.0, "3 numbers")
                                }
                                "std" -> c.array(field, x, 3, 3, "3 numbers > 0").forEachIndexed { k, m ->
                                    c.number("$field[$k]", m, 0.0, 1000.0, "3 numbers > 0", exclusiveMin = true)
                                }
                            }
                        }
                    }
                    "preprocessing" -> {
                        val pre = c.obj("input.preprocessing", v)
                        for ((name, x) in pre) {
                            val field = "input.preprocessing.$name"
                            when (name) {
                                "resize" -> c.enumOf(field, x, listOf("shorter-side"), "'shorter-side'")
                                "crop_pct" -> c.number(field, x, 0.0, 1.0, "a number in (0, 1]", exclusiveMin = true)
                                "interpolation" -> c.enumOf(field, x, Vocabulary.INTERPOLATIONS)
                            }
                        }
                    }
                }
            }
        }

        private fun checkOutput(c: Check, value: Any?) {
            val output = c.obj("output", value)
            for ((key, v) in output) {
                when (key) {
                    "name" -> c.string("output.name", v, 1, 256, "the graph's output name")
                    "kind" -> c.enumOf("output.kind", v, Vocabulary.OUTPUT_KINDS)
                    "shape" -> {
                        val shape = c.array("output.shape", v, 2, 2, "[batch, num_classes]")
                        checkBatch(c, "output.shape[0]", shape[0])
                        c.integer("output.shape[1]", shape[1], 1.0, 100000.0, "num_classes")
                    }
                }
            }
        }

        private fun checkLabels(c: Check, value: Any?) {
            val labels = c.objOrNull("labels", value, "null or an object with 'names'") ?: return
            c.require(labels, "labels", listOf("names"))
            for ((key, v) in labels) {
                when (key) {
                    "source" -> c.string("labels.source", v, 0, 4096, "a string")
                    "names" -> c.array("labels.names", v, 0, 100000, "a list of class names").forEachIndexed { k, name ->
                        c.string("labels.names[$k]", name, 1, 256,
                            "class names of 1..256 characters, not blank, without control characters") { Check.isLabel(it) }
                    }
                }
            }
        }

        private fun checkQuantization(c: Check, value: Any?) {
            val quantization = c.objOrNull("quantization", value, "null or an object") ?: return
            if (!quantization.containsKey("io")) return
            val io = c.obj("quantization.io", quantization["io"], "an object with 'input' and 'output'")
            c.require(io, "quantization.io", listOf("input", "output"))
            for ((end, v) in io) {
                if (end != "input" && end != "output") continue
                val path = "quantization.io.$end"
                val spec = c.obj(path, v, "an object with dtype, scale and zero_point")
                c.require(spec, path, listOf("dtype", "scale", "zero_point"))
                for ((key, x) in spec) {
                    when (key) {
                        "dtype" -> c.enumOf("$path.dtype", x, TensorSpec.DTYPES)
                        "scale" -> c.number("$path.scale", x, 0.0, 1e6, "a number in 0..1e6")
                        "zero_point" -> c.integer("$path.zero_point", x, -32768.0, 65535.0, "an integer")
                    }
                }
            }
        }

        /** The cross-field rules (the schema's x-rules, in its order), then the typed object. */
        @Suppress("UNCHECKED_CAST")
        private fun build(c: Check, root: Map<String, Any?>): Sidecar {
            val input = root["input"] as Map<String, Any?>
            val shape = input["shape"] as List<Any?>
            val layout = input["layout"] as String? ?: "NCHW"
            val dims = IntArray(3) { (shape[it + 1] as Double).toInt() }
            val batch = if (shape[0] == "batch") 0 else (shape[0] as Double).toInt()
            val channels = if (layout == "NHWC") dims[2] else dims[0]
            if (channels != 3) throw c.fail("input.shape", "mismatch", "must hold RGB (3 channels in $layout), not ${show(shape)}")
            if (Math.max(batch, 1).toLong() * dims[0] * dims[1] * dims[2] > MAX_INPUT_ELEMENTS) {
                throw c.fail("input.shape", "range", "must have at most $MAX_INPUT_ELEMENTS elements, not ${show(shape)}")
            }
            val backend = root["backend"] as String
            if (layout == "image" && (backend != "coreml" || Math.max(batch, 1) != 1)) {
                throw c.fail("input.layout", "mismatch", "'image' (a Core ML ImageType) needs backend coreml and batch 1")
            }
            val format = Vocabulary.format(backend)!!
            val precision = root["precision"] as String
            if (precision !in format.precisions) {
                throw c.fail("precision", "mismatch", "must be one of ${format.precisions.joinToString()} for " +
                    "${format.name}, not '$precision'")
            }
            val file = root["file"] as String
            if (!Check.lower(file).endsWith(format.suffix)) {
                throw c.fail("file", "mismatch", "must end with ${format.suffix} for ${format.name}, not ${BoundedJson.shown(file)}")
            }
            val numClasses = (root["num_classes"] as Double).toInt()
            val output = root["output"] as Map<String, Any?>
            val outShape = output["shape"] as List<Any?>?
            if (outShape != null && (outShape[1] as Double).toInt() != numClasses) {
                throw c.fail("output.shape", "mismatch", "must end with num_classes $numClasses, not ${show(outShape)}")
            }
            val labelsObject = root["labels"] as Map<String, Any?>?
            val labels = (labelsObject?.get("names") as List<String>?) ?: emptyList()
            if (labelsObject != null && labels.size != numClasses) {
                throw c.fail("labels.names", "mismatch", "must hold $numClasses names (num_classes), not ${labels.size}")
            }
            val io = (root["quantization"] as Map<String, Any?>?)?.get("io") as Map<String, Any?>?
            val specs = HashMap<String, TensorSpec>()
            for (end in if (io == null) emptyList() else listOf("input", "output")) {
                val spec = io!![end] as Map<String, Any?>
                val dtype = spec["dtype"] as String
                val scale = spec["scale"] as Double
                if (dtype != "float32" && scale <= 0.0) throw c.fail("quantization.io.$end.scale", "range", "must be > 0 for an integer tensor")
                specs[end] = if (dtype == "float32") TensorSpec.FLOAT32 else
                    TensorSpec(dtype, scale.toFloat(), (spec["zero_point"] as Double).toInt())
            }
            val norm = input["normalization"] as Map<String, Any?>
            val pre = input["preprocessing"] as Map<String, Any?>? ?: emptyMap()
            fun floats(key: String) = (norm[key] as List<Any?>).map { (it as Double).toFloat() }.toFloatArray()
            val nhwc = layout == "NHWC"
            return Sidecar(
                variant = root["variant"] as String, backend = backend, precision = precision, file = file,
                sha256 = root["sha256"] as String, sizeBytes = (root["size_bytes"] as Double?)?.toLong(),
                inputName = input["name"] as String? ?: "image", layout = layout, batch = batch,
                height = if (nhwc) dims[0] else dims[1], width = if (nhwc) dims[1] else dims[2],
                normalization = Normalization(floats("mean"), floats("std"), norm["in_graph"] as Boolean),
                preprocessing = Preprocessing(pre["crop_pct"] as Double? ?: Preprocessing.CROP_PCT,
                    pre["interpolation"] as String? ?: "bicubic", pre["resize"] as String? ?: "shorter-side"),
                outputName = output["name"] as String? ?: "logits", outputKind = output["kind"] as String? ?: "logits",
                numClasses = numClasses, labels = labels, examplesFile = root["examples"] as String?,
                inputSpec = specs["input"] ?: TensorSpec.FLOAT32, outputSpec = specs["output"] ?: TensorSpec.FLOAT32,
                npuSocModel = if (backend != Runtimes.NPU_COMPILED) null else
                    ((root["backend_info"] as? Map<*, *>)?.get("target") as? Map<*, *>)?.get("soc_model") as? String
            )
        }

        private fun show(list: List<Any?>): String = list.joinToString(", ", "[", "]") { BoundedJson.shown(it) }
    }
}
