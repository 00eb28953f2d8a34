package org.emomobile.demo

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.os.SystemClock
import org.emomobile.core.BenchResult
import java.io.File

/**
 * Headless benchmark mode (android_demo/BENCHMARK_MODE.md), started by `emo-bench --device adb --runner app`:
 * loads the artifact from `<external files>/emo-bench/`, runs the self-test on its bundled examples, times
 * `warmup` + `iters` inferences on the examples' first input, writes the result file atomically, and finishes.
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val extras = intent.extras ?: Bundle()
        val folder = File(getExternalFilesDir(null), "emo-bench")
        val modelName = File(extras.getString("model") ?: "").name  // a name inside the folder, never a path
        val output = File(folder, File(extras.getString("output") ?: "result-$modelName.json").name)
        val accelerator = extras.getString("accelerator") ?: "cpu"
        val threads = extras.getInt("threads", 4)
        val iters = extras.getInt("iters", 50)
        val warmup = extras.getInt("warmup", 10)
        Thread {
            val result = measure(File(folder, modelName), accelerator, threads, warmup, iters)
            result.writeTo(output)
            runOnUiThread { finish() }
        }.start()
    }

    private fun measure(file: File, accelerator: String, threads: Int, warmup: Int, iters: Int): BenchResult {
        var runtime = "?"
        try {
            val model = ModelCatalog.load(file) ?: throw IllegalArgumentException("no sidecar next to ${file.name}")
            runtime = if (model.sidecar.backend == "tflite") "litert" else "onnxruntime"
            if (accelerator !in acceleratorsFor(model.sidecar)) {
                throw IllegalArgumentException("accelerator $accelerator is not offered for ${model.sidecar.backend}; " +
                    "choose from ${acceleratorsFor(model.sidecar).joinToString()}")
            }
            val start = SystemClock.elapsedRealtimeNanos()
            openRunner(file, model.sidecar, accelerator, threads).use { runner ->
                val loadMs = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
                val parity = SelfTest.run(model, runner)
                val input = model.examples?.examples?.first()?.input ?: FloatArray(model.sidecar.inputSize) { 0.5f }
                var first: Double? = null
                repeat(warmup) {
                    val t = SystemClock.elapsedRealtimeNanos()
                    runner.run(input)
                    if (first == null) first = (SystemClock.elapsedRealtimeNanos() - t) / 1e6
                }
                val latencies = DoubleArray(iters) {
                    val t = SystemClock.elapsedRealtimeNanos()
                    runner.run(input)
                    (SystemClock.elapsedRealtimeNanos() - t) / 1e6
                }
                return BenchResult(file.name, runtime, accelerator, runner.acceleratorUsed, threads, loadMs, first,
                    latencies, peakMemoryMb(), deviceInfo(), "ok", APP_VERSION, parity)
            }
        } catch (e: Throwable) {
            return BenchResult(file.name, runtime, accelerator, "none", threads, null, null, DoubleArray(0),
                peakMemoryMb(), deviceInfo(), "failed: ${e.message?.lineSequence()?.first() ?: e.javaClass.simpleName}",
                APP_VERSION, null)
        }
    }

    companion object {
        const val APP_VERSION = "0.1.0"

        /** The process's peak resident set (VmHWM), in MB. */
        fun peakMemoryMb(): Double? = File("/proc/self/status").readLines()
            .firstOrNull { it.startsWith("VmHWM:") }?.split(Regex("\\s+"))?.getOrNull(1)?.toDoubleOrNull()?.div(1024)

        fun deviceInfo(): Map<String, String> = mapOf(
            "model" to Build.MODEL, "manufacturer" to Build.MANUFACTURER,
            "soc" to (if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else Build.HARDWARE),
            "os" to "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
            "abi" to Build.SUPPORTED_ABIS.first())
    }
}
