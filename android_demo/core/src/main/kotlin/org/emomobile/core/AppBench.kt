package org.emomobile.core

import org.json.JSONArray
import org.json.JSONObject
import java.io.File

/** A benchmark request that cannot be run; the message names the extra and the fix. */
class RequestException(message: String) : Exception(message)

/**
 * The headless benchmark's request (`android_demo/BENCHMARK_MODE.md`): the intent's extras as strings (the platform
 * turns the `Bundle` into a map and decides nothing). Names are plain file names inside the benchmark folder, so an
 * extra can never point the app at another file.
 */
class BenchmarkRequest(
    val model: String,
    val accelerator: String,
    val threads: Int,
    val warmup: Int,
    val iterations: Int,
    val output: String
) {
    companion object {
        const val DEFAULT_OUTPUT = "result.json"
        /** The defaults of a request, and of the demo screen's sessions. */
        const val DEFAULT_ACCELERATOR = "cpu"
        const val DEFAULT_THREADS = 4
        val KEYS = listOf("model", "accelerator", "threads", "warmup", "iters", "output")
        private val THREADS = intArrayOf(1, 64)
        private val WARMUP = intArrayOf(0, 10000)
        private val ITERATIONS = intArrayOf(1, 100000)
        /** The result schema's bounds on the strings a failed request echoes (`accelerator`, `artifact`). */
        private const val MAX_ACCELERATOR = 64
        private const val MAX_ARTIFACT = 255

        fun parse(extras: Map<String, String>): BenchmarkRequest {
            val unknown = extras.keys.filter { it !in KEYS }.sorted()
            if (unknown.isNotEmpty()) {
                throw RequestException("unknown extra ${unknown.joinToString()}; the app reads ${KEYS.joinToString()}")
            }
            val model = extras["model"] ?: throw RequestException("the extra 'model' (--es model model.tflite) is missing")
            fileName(model, "model")
            Runtimes.forFile(model)
            return BenchmarkRequest(model, extras["accelerator"] ?: DEFAULT_ACCELERATOR,
                integer(extras, "threads", DEFAULT_THREADS, THREADS), integer(extras, "warmup", 5, WARMUP),
                integer(extras, "iters", 50, ITERATIONS), outputOf(extras))
        }

        /** The result file's name: the extra when it is a plain `.json` name, else [DEFAULT_OUTPUT], so that even
         * a request that cannot be parsed gets its failure written where emo-bench looks. */
        fun outputOf(extras: Map<String, String>): String {
            val name = extras["output"] ?: return DEFAULT_OUTPUT
            return try {
                fileName(name, "output")
                if (name.endsWith(".json")) name else DEFAULT_OUTPUT
            } catch (e: RequestException) {
                DEFAULT_OUTPUT
            }
        }

        /**
         * What could be read of the request, for the `request` object of a failed result: a number only when
         * [parse] would take it and a string cut to the schema's length, so that a hand-made request (`--ei warmup
         * -1`) still gets a valid result file that says why it failed, not a schema error in emo-bench.
         */
        fun partial(extras: Map<String, String>): Map<String, Any?> = mapOf(
            "accelerator" to extras["accelerator"]?.let { bounded(it, MAX_ACCELERATOR) },
            "threads" to within(extras["threads"], THREADS), "warmup" to within(extras["warmup"], WARMUP),
            "iterations" to within(extras["iters"], ITERATIONS)
        )

        /** The result's `artifact` for a request that may not parse: the extra, cut to the schema's length, or "?". */
        fun artifactOf(extras: Map<String, String>): String {
            val model = extras["model"] ?: return "?"
            return if (model.isEmpty()) "?" else bounded(model, MAX_ARTIFACT)
        }

        /** [text] cut to [max] code points (the schema counts code points, as Python's len). */
        fun bounded(text: String, max: Int): String =
            if (text.codePointCount(0, text.length) <= max) text else text.substring(0, text.offsetByCodePoints(0, max))

        private fun within(text: String?, range: IntArray): Int? {
            val value = text?.trim()?.toIntOrNull() ?: return null
            return if (value < range[0] || value > range[1]) null else value
        }

        private fun fileName(name: String, key: String) {
            if (name.isEmpty() || name.startsWith(".") || name.contains('/') || name.contains('\\') ||
                name.contains('\u0000')) {
                throw RequestException("the extra '$key' must be a file name inside the benchmark folder, not '$name'")
            }
            if (name.codePointCount(0, name.length) > MAX_ARTIFACT) {  // no file system has longer names
                throw RequestException("the extra '$key' must be a file name of at most $MAX_ARTIFACT characters, " +
                    "not ${name.codePointCount(0, name.length)}")
            }
        }

        private fun integer(extras: Map<String, String>, key: String, default: Int, range: IntArray): Int {
            val text = extras[key] ?: return default
            return within(text, range)
                ?: throw RequestException("the extra '$key' must be an integer in [${range[0]}, ${range[1]}], not '$text'")
        }
    }
}

/** The `device` object, with the same fields on Android and iOS. */
class DeviceInfo(val model: String, val manufacturer: String, val soc: String, val os: String, val abi: String) {
    fun toJson(): JSONObject = JSONObject().put("model", model).put("manufacturer", manufacturer).put("soc", soc)
        .put("os", os).put("abi", abi)

    companion object {
        /** From `android.os.Build`: [socModel] is `Build.SOC_MODEL` (API 31+, else null: [hardware] is used). */
        fun android(model: String, manufacturer: String, socModel: String?, hardware: String, release: String,
                    sdkInt: Int, abis: List<String>): DeviceInfo {
            val soc = if (socModel != null && socModel.isNotBlank() && socModel != "unknown") socModel else hardware
            return DeviceInfo(model, manufacturer, if (soc.isBlank()) "?" else soc, "Android $release (API $sdkInt)",
                abis.firstOrNull() ?: "?")
        }

        /** The process's peak resident set in MB from `/proc/self/status` (`VmHWM: 91234 kB`), or null. */
        fun peakMemoryMb(procStatus: String): Double? {
            val line = procStatus.lineSequence().firstOrNull { it.startsWith("VmHWM:") } ?: return null
            val kb = line.removePrefix("VmHWM:").trim().split(Regex("\\s+")).firstOrNull()?.toDoubleOrNull()
            return kb?.div(1024.0)
        }
    }
}

/**
 * The result file of the headless benchmark (`emo-mobile/app-bench/1`, the same on Android and iOS; JSON Schema in
 * `emo/contract/schemas/app-bench.schema.json`); `emo-bench` maps it to a row and computes the summary statistics
 * from the raw [latenciesMs].
 */
class AppBenchResult(
    val artifact: String,
    /** "litert", "onnxruntime" or "none" (the run failed before a runtime was chosen). */
    val runtime: String,
    val runtimeVersion: String?,
    val request: Map<String, Any?>,
    val accelerator: AcceleratorReport,
    /** CPU threads the runtime was configured with. */
    val threads: Int?,
    /** Element types of the graph's input and output ("float32", "int8", "uint8"). */
    val io: Pair<String, String>,
    val loadMs: Double?,
    val firstInferenceMs: Double?,
    val latenciesMs: DoubleArray,
    val peakMemoryMb: Double?,
    val device: DeviceInfo,
    /** "ok" or "failed: <reason>". */
    val status: String,
    val appVersion: String,
    /** The self-test on the bundled examples, run before timing (null without an examples file). */
    val parity: Agreement?
) {
    fun toJson(): JSONObject {
        val json = JSONObject()
        json.put("schema", SCHEMA)
        json.put("app", JSONObject().put("platform", "android").put("version", appVersion))
        json.put("artifact", artifact)
        json.put("runtime", runtime)
        json.put("runtime_version", runtimeVersion ?: JSONObject.NULL)
        val req = JSONObject()
        for (key in listOf("accelerator", "threads", "warmup", "iterations")) req.put(key, request[key] ?: JSONObject.NULL)
        json.put("request", req)
        val acc = JSONObject()
        acc.put("requested", accelerator.requested ?: JSONObject.NULL)
        acc.put("used", JSONArray(accelerator.used))
        acc.put("source", accelerator.source)
        val nodes = accelerator.nodes
        acc.put("nodes", if (nodes == null) JSONObject.NULL else JSONObject(nodes))
        acc.put("detail", accelerator.detail ?: JSONObject.NULL)
        json.put("accelerator", acc)
        json.put("threads", threads ?: JSONObject.NULL)
        json.put("io", JSONObject().put("input", io.first).put("output", io.second))
        json.put("load_ms", number(loadMs))
        json.put("first_inference_ms", number(firstInferenceMs))
        val latencies = JSONArray()
        for (v in latenciesMs) latencies.put(v)
        json.put("latencies_ms", latencies)
        json.put("peak_memory_mb", number(peakMemoryMb))
        json.put("device", device.toJson())
        json.put("status", status)
        val p = parity
        if (p == null) {
            json.put("parity", JSONObject.NULL)
        } else {
            json.put("parity", JSONObject().put("max_abs_diff", number(p.maxAbsDiff)).put("cosine", number(p.cosine))
                .put("top1_agreement", p.top1Agreement).put("top5_agreement", p.top5Agreement)
                .put("num_examples", p.numExamples).put("status", p.status))
        }
        return json
    }

    private fun number(v: Double?): Any = if (v == null || v.isNaN() || v.isInfinite()) JSONObject.NULL else v

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
        const val SCHEMA = "emo-mobile/app-bench/1"
    }
}
