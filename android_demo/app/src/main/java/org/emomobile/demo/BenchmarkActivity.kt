package org.emomobile.demo

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.os.Process
import android.util.Log
import android.view.WindowManager
import org.emomobile.core.Benchmark
import org.emomobile.core.BenchmarkContext
import org.emomobile.core.BenchmarkRequest
import org.emomobile.core.DeviceInfo
import java.io.File
import java.io.IOException

/**
 * Headless benchmark mode (android_demo/BENCHMARK_MODE.md), started by `emo-bench --device adb --runner app` with
 * `am start -W -S -n org.emomobile.demo/.BenchmarkActivity --es model ... --ei iters ...`.
 *
 * The run (org.emomobile.core.Benchmark: request, load, self-test, warm-up, timed iterations, result file) takes
 * seconds to minutes, so it runs on a worker thread and the activity finishes afterwards from the UI thread. That is
 * why the manifest gives it a translucent theme and not Theme.NoDisplay: since API 23 AOSP's
 * Activity.performResume throws "did not call finish() prior to onResume() completing" for a NoDisplay activity
 * that is still running when onResume returns.
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)  // a screen going off mid-run would throttle it
        if (savedInstanceState != null) {
            // recreated (a configuration change configChanges does not cover): the first instance's thread goes on
            // and writes the result; this window must not stay on top of the phone
            finish()
            return
        }
        val extras = intent.extras?.let { bundle ->
            @Suppress("DEPRECATION")  // Bundle.get: --es and --ei extras alike, as text for the core to parse
            bundle.keySet().associateWith { bundle.get(it)?.toString() ?: "" }
        } ?: emptyMap()
        val folder = getExternalFilesDir(null)?.let { File(it, "emo-bench") }
        if (folder == null) {
            // nowhere to write a result: end the process, so that emo-bench's `pidof` check fails the row at once
            // instead of waiting for its timeout
            Log.e(TAG, "no external files folder (shared storage unavailable): nothing to benchmark, no result")
            finishAndRemoveTask()
            Process.killProcess(Process.myPid())
            return
        }
        Thread({
            val context = BenchmarkContext(folder.absolutePath, folder.list()?.toList() ?: emptyList(),
                { File(folder, it).readBytes() }, AndroidEngineLoader(cacheDir, BuildConfig.LITERT_VERSION,
                        applicationInfo.nativeLibraryDir),
                ElapsedRealtime,
                { DeviceInfo.peakMemoryMb(File("/proc/self/status").readText()) }, device(), BuildConfig.VERSION_NAME)
            val result = Benchmark.run(extras, context)
            try {
                folder.mkdirs()  // emo-bench made it; a run started by hand may not have
                result.writeTo(File(folder, BenchmarkRequest.outputOf(extras)))
                Log.i(TAG, "${result.artifact}: ${result.status}")
            } catch (e: IOException) {
                Log.e(TAG, "cannot write the result: ${e.message}")
            }
            runOnUiThread { finish() }
        }, "emo-benchmark").start()
    }

    companion object {
        const val TAG = "EMOBenchmark"

        fun device(): DeviceInfo = DeviceInfo.android(Build.MODEL, Build.MANUFACTURER,
            if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else null, Build.HARDWARE, Build.VERSION.RELEASE,
            Build.VERSION.SDK_INT, Build.SUPPORTED_ABIS.toList())
    }
}
