package org.emomobile.core

/** One artifact format of the contract (`emo.contract.vocabulary.Format`): the name `emo-export --format` takes and
 * the sidecar's `backend` holds, its file suffix, its precisions (the first is the default), its runtime family and
 * which apps run it. */
class Format(
    val name: String,
    val tag: String,
    val suffix: String,
    val precisions: List<String>,
    val runtime: String,
    val browser: Boolean = false,
    val android: Boolean = false,
    val ios: Boolean = false
)

/**
 * The words of the artifact contract, as `emo/contract/vocabulary.json` holds them: a JUnit test compares every entry
 * with that file (tests/test_android_core.py passes its folder in), so this table and Python's cannot drift apart.
 */
object Vocabulary {
    val PRECISIONS = listOf("fp32", "fp16", "int8", "w8a16")
    val QUANTIZED = listOf("int8", "w8a16")
    val LAYOUTS = listOf("NCHW", "NHWC", "image")
    val OUTPUT_KINDS = listOf("logits", "probabilities")
    val VARIANTS = listOf("emo_1m", "emo_2m", "emo_5m", "emo_6m")
    val INTERPOLATIONS = listOf("bicubic")
    val BENCH_TARGETS = listOf("host", "browser", "adb", "mac", "ios", "aihub")
    const val SIDECAR_SUFFIX = ".json"
    const val EXAMPLES_SUFFIX = ".examples.json"

    val FORMATS = listOf(
        Format("onnx", "onnx", ".onnx", listOf("fp32", "int8"), "onnxruntime", browser = true, android = true),
        Format("ort", "ort", ".ort", listOf("fp32", "int8"), "onnxruntime", browser = true, android = true),
        Format("coreml", "coreml", ".mlpackage", listOf("fp16", "fp32", "int8"), "coreml", ios = true),
        Format("tflite", "tflite", ".tflite", listOf("fp32", "fp16", "int8"), "litert", browser = true, android = true),
        Format("executorch", "xnnpack", ".pte", listOf("fp32", "int8"), "executorch"),
        Format("qnn", "qnn", ".onnx", listOf("w8a16", "int8"), "qnn"),
        Format("pt2", "pytorch", ".pt2", listOf("fp32"), "pytorch"),
        Format("executorch-coreml", "coreml-et", ".pte", listOf("fp16"), "executorch"),
        Format("litert-npu", "litert-npu", ".tflite", listOf("fp16", "int8"), "litert", android = true)
    )

    fun format(name: String): Format? = FORMATS.firstOrNull { it.name == name }
}
