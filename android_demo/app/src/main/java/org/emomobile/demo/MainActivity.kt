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
import androidx.activity.enableEdgeToEdge
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.view.CameraController
import androidx.camera.view.LifecycleCameraController
import androidx.camera.view.PreviewView
import androidx.compose.foundation.horizontalScroll
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.safeDrawingPadding
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
import org.emomobile.core.Benchmark
import org.emomobile.core.BenchmarkRequest
import org.emomobile.core.CatalogFolder
import org.emomobile.core.CatalogScan
import org.emomobile.core.Classify
import org.emomobile.core.ModelCatalog
import org.emomobile.core.OpenedModel
import org.emomobile.core.Preprocessor
import org.emomobile.core.Runtimes
import org.emomobile.core.Texts
import java.io.File
import java.nio.ByteBuffer
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
    private var scan = CatalogScan(emptyList(), emptyList())  // written on the inference thread, before any choice
    private val folders = LinkedHashMap<String, File>()       // the scan's folder names -> where their files are
    private var opened: OpenedModel? = null  // touched on the inference thread only

    // UI state, written on the main thread
    private val titles = mutableStateOf(listOf<String>())
    private val selected = mutableStateOf<String?>(null)
    private val accelerator = mutableStateOf(BenchmarkRequest.DEFAULT_ACCELERATOR)
    private val status = mutableStateOf("looking for models…")
    private val report = mutableStateOf("")      // the gallery photo's or the self-test's result
    private val live = mutableStateOf("")        // the camera's latest frame
    private val cameraOn = mutableStateOf(false)
    private var controller: LifecycleCameraController? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        enableEdgeToEdge()  // what targetSdk 35 enforces anyway; the screen pads itself with the safe-drawing insets
        super.onCreate(savedInstanceState)
        setContent { MaterialTheme { Screen() } }
        inference.execute {
            val text = try {
                findModels().summary("copy emo-export's output into app/src/main/assets/")
            } catch (e: Throwable) {
                Texts.failure("cannot list the models", e)
            }
            runOnUiThread {
                titles.value = scan.titles
                status.value = text
                scan.titles.firstOrNull()?.let { choose(it, BenchmarkRequest.DEFAULT_ACCELERATOR) }
            }
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        controller?.clearImageAnalysisAnalyzer()
        inference.execute { opened?.session?.close(); opened = null }
        inference.shutdown()
    }

    /** Copies the APK's model files out (the runtimes open files) and lists both folders through the core. */
    private fun findModels(): CatalogScan {
        val copied = File(filesDir, "models").apply { mkdirs() }
        val installed = packageManager.getPackageInfo(packageName, 0).lastUpdateTime
        for (name in assets.list("")?.filter { ModelCatalog.isModelFile(it) } ?: emptyList()) {
            val target = File(copied, name)
            if (!target.exists() || target.lastModified() < installed) {
                assets.open(name).use { input -> target.outputStream().use { input.copyTo(it) } }
            }
        }
        folders["app"] = copied
        getExternalFilesDir(null)?.let { folders["external"] = it }
        val listed = folders.map { (name, dir) -> CatalogFolder(name, dir.list()?.toList() ?: emptyList()) }
        scan = ModelCatalog.scan(listed) { folder, file -> File(folders.getValue(folder.name), file).readBytes() }
        return scan
    }

    /** Opens [title] on [acceleratorName] (closing the previous session) on the inference thread; the session is
     * kept only when it opened and its probe (the self-test) ran. */
    private fun choose(title: String, acceleratorName: String) {
        selected.value = title
        accelerator.value = acceleratorName
        status.value = "opening $title on $acceleratorName…"
        inference.execute {
            opened?.session?.close()
            opened = null
            val text = try {
                val model = scan.byTitle(title) ?: throw IllegalStateException("no model $title")
                val path = File(folders.getValue(model.entry.folder), model.entry.artifact).absolutePath
                val ready = Benchmark.openAndProbe(model, path, acceleratorName, BenchmarkRequest.DEFAULT_THREADS,
                    AndroidEngineLoader(cacheDir, BuildConfig.LITERT_VERSION,
                        applicationInfo.nativeLibraryDir), ElapsedRealtime)
                opened = ready
                Texts.opened(title, ready)
            } catch (e: Throwable) {
                Texts.failure("cannot open $title on $acceleratorName", e)
            }
            runOnUiThread { status.value = text }
        }
    }

    /** Top-5 of one upright bitmap, on the inference thread. */
    private fun classify(image: Bitmap): String {
        val current = opened ?: return "no model open"
        val bitmap = eightBit(image)
        val input = Preprocessor(current.session.sidecar).tensor(rgbaOf(bitmap), bitmap.width, bitmap.height,
            bitmap.rowBytes)
        val start = SystemClock.elapsedRealtimeNanos()
        val output = current.session.run(input)
        val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
        return Texts.predictions(Classify.predictions(output, current.session.sidecar), ms, current.ran)
    }

    private fun classifyPhoto(uri: Uri) {
        report.value = "classifying…"
        inference.execute {
            val text = try {
                classify(decode(uri))
            } catch (e: Throwable) {  // OutOfMemoryError too: a message, not a dead app
                Texts.failure("could not classify the photo", e)
            }
            runOnUiThread { report.value = text }
        }
    }

    private fun selfTest() {
        report.value = "self-test…"
        inference.execute {
            val current = opened
            val model = selected.value?.let { scan.byTitle(it) }
            val text = if (current == null || model == null) "no model open" else try {
                val set = model.examples
                Texts.selfTest(set?.agreement(set.examples.map { current.session.run(it.input) }), model.title,
                    current.ran)
            } catch (e: Throwable) {
                Texts.failure("self-test failed", e)
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
                } catch (e: Throwable) {
                    Texts.failure("frame", e)
                }
            }
            runOnUiThread { live.value = text }
        }
        camera.bindToLifecycle(this)
        view.controller = camera
        controller = camera
    }

    /**
     * A photo, upright (ImageDecoder, API 28 = minSdk, applies the EXIF orientation), as decoded: in its own colour
     * space and unpremultiplied (the core's colour policy: no conversion), in software memory (its bytes are read),
     * at most the core's decode bound (a larger photo is scaled down by the decoder instead of exhausting the heap).
     */
    private fun decode(uri: Uri): Bitmap =
        ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, info, _ ->
            decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
            decoder.isUnpremultipliedRequired = true
            val size = Preprocessor.decodeSize(info.size.width, info.size.height)
            if (size[0] != info.size.width || size[1] != info.size.height) decoder.setTargetSize(size[0], size[1])
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
        Column(Modifier.safeDrawingPadding().padding(12.dp).verticalScroll(rememberScrollState())) {
            Row(Modifier.horizontalScroll(rememberScrollState())) {
                titles.value.forEach { t ->
                    FilterChip(selected.value == t, { choose(t, BenchmarkRequest.DEFAULT_ACCELERATOR) }, { Text(t) })
                }
            }
            selected.value?.let { title -> scan.byTitle(title) }?.let { model ->
                Row(Modifier.horizontalScroll(rememberScrollState())) {
                    Runtimes.accelerators(Runtimes.forFile(model.entry.artifact)).forEach { a ->
                        FilterChip(accelerator.value == a, { choose(model.title, a) }, { Text(a) })
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
                // COMPATIBLE (a TextureView): CameraX's advice for a preview inside a scrolling container
                AndroidView({ context ->
                    PreviewView(context).also {
                        it.implementationMode = PreviewView.ImplementationMode.COMPATIBLE
                        startCamera(it)
                    }
                }, Modifier.fillMaxWidth().height(280.dp))
                Text(live.value, fontFamily = FontFamily.Monospace)
            }
        }
    }

    private companion object {
        /** 8 bits a channel, as the core reads pixels (a 16-bit photo decodes to RGBA_F16). */
        fun eightBit(bitmap: Bitmap): Bitmap =
            if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)

        /** An ARGB_8888 bitmap's pixels as the core takes them: RGBA bytes in rows of `rowBytes`, as stored
         * (`copyPixelsToBuffer` neither converts colours, as `getPixels` does, nor premultiplies). */
        fun rgbaOf(bitmap: Bitmap): ByteArray {
            val bytes = ByteArray(bitmap.rowBytes * bitmap.height)
            bitmap.copyPixelsToBuffer(ByteBuffer.wrap(bytes))
            return bytes
        }

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
