package org.emomobile.core

import org.json.JSONArray
import org.json.JSONObject
import java.io.File

/**
 * The result file of the app's headless benchmark mode (`android_demo/BENCHMARK_MODE.md`, schema
 * `emo-mobile/android-bench/1`); `emo-bench --device adb --runner app` pulls it and maps it to an `emo-bench` row
 * (its median, p90... are computed there from the raw [latenciesMs], as for every other target).
 */
class BenchResult(
    val artifact: String,
    /** "litert" or "onnxruntime". */
    val runtime: String,
    /** What was asked for: cpu, xnnpack, gpu, npu (LiteRT); cpu, xnnpack, nnapi, qnn (ONNX Runtime). */
    val accelerator: String,
    /** What the runtime actually used (a delegate that refused the graph falls back to the CPU). */
    val acceleratorUsed: String,
    val threads: Int,
    val loadMs: Double?,
    val firstInferenceMs: Double?,
    val latenciesMs: DoubleArray,
    val peakMemoryMb: Double?,
    val device: Map<String, String>,
    /** "ok" or "failed: <reason>". */
    val status: String,
    val appVersion: String,
    /** The self-test on the bundled examples, run before timing (null if the artifact has no examples file). */
    val parity: Agreement?
) {
    fun toJson(): JSONObject {
        val json = JSONObject()
        json.put("schema", SCHEMA)
        json.put("artifact", artifact)
        json.put("runtime", runtime)
        json.put("accelerator", accelerator)
        json.put("accelerator_used", acceleratorUsed)
        json.put("threads", threads)
        json.put("load_ms", loadMs ?: JSONObject.NULL)
        json.put("first_inference_ms", firstInferenceMs ?: JSONObject.NULL)
        val latencies = JSONArray()
        for (v in latenciesMs) latencies.put(v)
        json.put("latencies_ms", latencies)
        json.put("peak_memory_mb", peakMemoryMb ?: JSONObject.NULL)
        json.put("device", JSONObject(device))
        json.put("status", status)
        json.put("app_version", appVersion)
        val p = parity
        if (p == null) {
            json.put("parity", JSONObject.NULL)
        } else {
            val o = JSONObject()
            o.put("max_abs_diff", finite(p.maxAbsDiff))
            o.put("cosine", finite(p.cosine))
            o.put("top1_agreement", p.top1Agreement)
            o.put("top5_agreement", p.top5Agreement)
            o.put("num_examples", p.numExamples)
            o.put("status", p.status)
            json.put("parity", o)
        }
        return json
    }

    private fun finite(v: Double): Any = if (v.isNaN() || v.isInfinite()) JSONObject.NULL else v

    /** Write atomically: a temporary name in the same folder, then a rename (emo-bench polls for the file). */
    fun writeTo(file: File) {
        val tmp = File(file.parentFile, ".${file.name}.tmp")
        try {
            tmp.writeText(toJson().toString() + "\n", Charsets.UTF_8)
            if (!tmp.renameTo(file)) throw java.io.IOException("cannot rename $tmp to $file")
        } finally {
            if (tmp.exists()) tmp.delete()
        }
    }

    companion object {
        const val SCHEMA = "emo-mobile/android-bench/1"
    }
}
