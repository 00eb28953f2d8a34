package org.emomobile.demo

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.graphics.Matrix
import android.net.Uri
import android.os.Bundle
import android.os.SystemClock
import androidx.activity.ComponentActivity
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.compose.setContent
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.view.CameraController
import androidx.camera.view.LifecycleCameraController
import androidx.camera.view.PreviewView
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.mutableStateOf
import androidx.compose.ui.Modifier
import androidx.compose.ui.text.font.FontFamily
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import androidx.core.content.ContextCompat
import org.emomobile.core.AcceleratorReport
import org.emomobile.core.Benchmark
import org.emomobile.core.CatalogModel
import org.emomobile.core.Classify
import org.emomobile.core.ModelCatalog
import org.emomobile.core.ModelSession
import org.emomobile.core.Preprocessor
import org.emomobile.core.Runtimes
import org.emomobile.core.Texts
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * The demo: pick a model (every artifact in assets/ or the app's external files folder with its sidecar) and an
 * accelerator, then classify a gallery photo or the camera's frames (top-5, latency, what ran), or run the self-test
 * on the bundled examples. Decisions are org.emomobile.core's; this file is UI and platform calls.
 *
 * Threads: every model call (open, classify, self-test, close) runs on one [inference] thread, so a session is
 * never used by two threads nor after it is closed, and the UI thread only shows text. Camera frames are analysed
 * on that thread too (CameraX drops frames while it is busy: STRATEGY_KEEP_ONLY_LATEST).
 */
class MainActivity : ComponentActivity() {
    private val inference: ExecutorService = Executors.newSingleThreadExecutor { Thread(it, "emo-inference") }
    private var models = listOf<CatalogModel>()
    private var session: ModelSession? = null  // touched on the inference thread only
    private var sessionRan = ""

    // UI state, written on the main thread
    private val names = mutableStateOf(listOf<String>())
    private val selected = mutableStateOf<String?>(null)
    private val accelerator = mutableStateOf("cpu")
    private val status = mutableStateOf("looking for models…")
    private val report = mutableStateOf("")      // the gallery photo's or the self-test's result
    private val live = mutableStateOf("")        // the camera's latest frame
    private val cameraOn = mutableStateOf(false)
    private var controller: LifecycleCameraController? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { MaterialTheme { Screen() } }
        inference.execute {
            val found = findModels()
            runOnUiThread {
                names.value = models.map { it.entry.artifact }
                status.value = found
                models.firstOrNull()?.let { choose(it.entry.artifact, "cpu") }
            }
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        controller?.clearImageAnalysisAnalyzer()
        inference.execute { session?.close(); session = null }
        inference.shutdown()
    }

    /** Copies the APK's model files out (the runtimes open files), lists both folders; returns what to show. */
    private fun findModels(): String {
        val folder = File(filesDir, "models").apply { mkdirs() }
        val installed = packageManager.getPackageInfo(packageName, 0).lastUpdateTime
        for (name in assets.list("")?.filter { ModelCatalog.isModelFile(it) } ?: emptyList()) {
            val target = File(folder, name)
            if (!target.exists() || target.lastModified() < installed) {
                assets.open(name).use { input -> target.outputStream().use { input.copyTo(it) } }
            }
        }
        val found = ArrayList<CatalogModel>()
        val skipped = ArrayList<String>()
        for (dir in listOfNotNull(folder, getExternalFilesDir(null))) {
            val listing = dir.list()?.toList() ?: continue
            val catalog = ModelCatalog.discover(listing)
            skipped += catalog.skipped
            for (entry in catalog.entries) {
                try {
                    found += ModelCatalog.open(entry, listing) { File(dir, it).readBytes() }
                } catch (e: Exception) {
                    skipped += "${entry.artifact}: ${Benchmark.reason(e)}"
                }
            }
        }
        models = found
        val head = if (found.isEmpty()) "no models: copy emo-export's output into app/src/main/assets/" else ""
        return (listOf(head) + skipped).filter { it.isNotEmpty() }.joinToString("\n")
    }

    private fun modelFile(model: CatalogModel): File {
        val inFiles = File(File(filesDir, "models"), model.entry.artifact)
        return if (inFiles.exists()) inFiles else File(getExternalFilesDir(null), model.entry.artifact)
    }

    /** Opens [name] on [acceleratorName] (closing the previous session) on the inference thread. */
    private fun choose(name: String, acceleratorName: String) {
        selected.value = name
        accelerator.value = acceleratorName
        status.value = "opening $name on $acceleratorName…"
        inference.execute {
            session?.close()
            session = null
            val model = models.first { it.entry.artifact == name }
            val text = try {
                val loader = AndroidEngineLoader(cacheDir)
                val runtime = Runtimes.forFile(name)
                val available = loader.available(runtime)
                val plan = Runtimes.plan(modelFile(model).absolutePath, name, model.sidecar, acceleratorName,
                    THREADS, available)
                val opened = Benchmark.open(model.sidecar, loader, plan)
                session = opened
                // one inference so the runtime can say what ran (ONNX Runtime's profile ends here)
                opened.run(FloatArray(model.sidecar.inputSize))
                val engine = opened.engine.report()
                sessionRan = if (runtime == Runtimes.LITERT) {
                    AcceleratorReport.litert(plan, available, engine.fullyAccelerated).summary()
                } else {
                    AcceleratorReport.onnxruntime(plan, engine.providerNodes).summary()
                }
                "$name on $sessionRan"
            } catch (e: Exception) {
                "cannot open $name on $acceleratorName: ${Benchmark.reason(e)}"
            }
            runOnUiThread { status.value = text }
        }
    }

    /** Top-5 of one upright bitmap, on the inference thread. */
    private fun classify(bitmap: Bitmap): String {
        val current = session ?: return "no model open"
        val pixels = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        val input = Preprocessor(current.sidecar).tensor(pixels, bitmap.width, bitmap.height)
        val start = SystemClock.elapsedRealtimeNanos()
        val output = current.run(input)
        val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
        return Texts.predictions(Classify.predictions(output, current.sidecar), ms, sessionRan)
    }

    private fun classifyPhoto(uri: Uri) {
        report.value = "classifying…"
        inference.execute {
            val text = try {
                // ImageDecoder (API 28 = minSdk) applies the EXIF orientation; getPixels needs a software bitmap
                val bitmap = ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, _, _ ->
                    decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
                }
                classify(bitmap)
            } catch (e: Exception) {
                "could not classify the photo: ${Benchmark.reason(e)}"
            }
            runOnUiThread { report.value = text }
        }
    }

    private fun selfTest() {
        report.value = "self-test…"
        inference.execute {
            val current = session
            val model = models.firstOrNull { it.entry.artifact == selected.value }
            val text = if (current == null || model == null) "no model open" else try {
                val set = model.examples
                Texts.selfTest(set?.agreement(set.examples.map { current.run(it.input) }), model.entry.artifact, sessionRan)
            } catch (e: Exception) {
                "self-test failed: ${Benchmark.reason(e)}"
            }
            runOnUiThread { report.value = text }
        }
    }

    /** Binds the camera (after the permission is granted) with frames analysed on the inference thread. */
    private fun startCamera(view: PreviewView) {
        val camera = LifecycleCameraController(this)
        camera.setEnabledUseCases(CameraController.IMAGE_ANALYSIS)
        camera.imageAnalysisBackpressureStrategy = ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST
        camera.setImageAnalysisAnalyzer(inference) { frame: ImageProxy ->
            val text = frame.use {
                try {
                    classify(upright(it))
                } catch (e: Exception) {
                    "frame: ${Benchmark.reason(e)}"
                }
            }
            runOnUiThread { live.value = text }
        }
        camera.bindToLifecycle(this)
        view.controller = camera
        controller = camera
    }

    @Composable
    private fun Screen() {
        val picker = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
            if (uri != null) classifyPhoto(uri)
        }
        // launched from a button, after composition: the launcher is registered by then (it is not inside a
        // factory or the composition itself, where activity-compose throws "Launcher has not been initialized")
        val permission = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (granted) cameraOn.value = true else live.value = "camera permission denied"
        }
        Column(Modifier.padding(12.dp).verticalScroll(rememberScrollState())) {
            Row { names.value.forEach { n -> FilterChip(selected.value == n, { choose(n, "cpu") }, { Text(n) }) } }
            selected.value?.let { name ->
                Row {
                    Runtimes.accelerators(Runtimes.forFile(name)).forEach { a ->
                        FilterChip(accelerator.value == a, { choose(name, a) }, { Text(a) })
                    }
                }
            }
            Text(status.value)
            Row {
                Button({ picker.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) }) {
                    Text("Gallery")
                }
                Button({ selfTest() }) { Text("Self-test") }
                Button({
                    if (ContextCompat.checkSelfPermission(this@MainActivity, Manifest.permission.CAMERA) ==
                        PackageManager.PERMISSION_GRANTED) cameraOn.value = true
                    else permission.launch(Manifest.permission.CAMERA)
                }) { Text("Camera") }
            }
            Text(report.value, fontFamily = FontFamily.Monospace)
            if (cameraOn.value) {
                AndroidView({ context -> PreviewView(context).also { startCamera(it) } },
                    Modifier.fillMaxWidth().height(280.dp))
                Text(live.value, fontFamily = FontFamily.Monospace)
            }
        }
    }

    private companion object {
        const val THREADS = 4

        /** A camera frame as an upright bitmap (sensors deliver frames rotated; the model must see them upright). */
        fun upright(frame: ImageProxy): Bitmap {
            val bitmap = frame.toBitmap()
            val degrees = frame.imageInfo.rotationDegrees
            if (degrees == 0) return bitmap
            val matrix = Matrix().apply { postRotate(degrees.toFloat()) }
            return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, matrix, true)
        }
    }
}
