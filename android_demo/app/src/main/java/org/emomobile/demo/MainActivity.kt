package org.emomobile.demo

import android.Manifest
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.os.Bundle
import android.os.SystemClock
import androidx.activity.ComponentActivity
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.compose.setContent
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.ImageProxy
import androidx.camera.view.LifecycleCameraController
import androidx.camera.view.PreviewView
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.Button
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import androidx.core.content.ContextCompat
import org.emomobile.core.Classify
import org.emomobile.core.Preprocessor

/**
 * The demo: pick a model (every artifact in assets/ with its sidecar), an accelerator, then classify camera frames
 * or a gallery photo (top-5, latency, accelerator actually used), or run the self-test on the bundled examples.
 * All pre- and post-processing is in :core; this file is UI.
 */
/** A camera frame as an upright ARGB bitmap (sensors deliver frames rotated; the model must see them upright). */
private fun upright(frame: ImageProxy): Bitmap {
    val bitmap = frame.toBitmap()
    val degrees = frame.imageInfo.rotationDegrees
    if (degrees == 0) return bitmap
    val matrix = android.graphics.Matrix().apply { postRotate(degrees.toFloat()) }
    return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, matrix, true)
}

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val models = ModelCatalog.list(this)
        setContent { MaterialTheme { DemoScreen(models) } }
    }

    @Composable
    private fun DemoScreen(models: List<CatalogModel>) {
        var model by remember { mutableStateOf(models.firstOrNull()) }
        var accelerator by remember { mutableStateOf("cpu") }
        var runner by remember { mutableStateOf<ModelRunner?>(null) }
        var report by remember { mutableStateOf(if (models.isEmpty()) "no models: copy emo-export's output into assets/" else "") }

        fun reopen() {
            runner?.close()
            runner = model?.let { runCatching { openRunner(it.file, it.sidecar, accelerator, 4) }
                .onFailure { e -> report = "load failed: ${e.message}" }.getOrNull() }
        }

        fun classify(bitmap: Bitmap) {
            val m = model ?: return
            val r = runner ?: return
            val pixels = IntArray(bitmap.width * bitmap.height)
            bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
            val input = Preprocessor(m.sidecar).tensor(pixels, bitmap.width, bitmap.height)
            val start = SystemClock.elapsedRealtimeNanos()
            val output = r.run(input)
            val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
            report = Classify.predictions(output, m.sidecar).joinToString("\n") {
                "%-28s %.3f".format(it.label, it.probability)
            } + "\n%.2f ms on %s".format(ms, r.acceleratorUsed)
        }

        val picker = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
            uri ?: return@rememberLauncherForActivityResult
            val bitmap = ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { d, _, _ ->
                d.allocator = ImageDecoder.ALLOCATOR_SOFTWARE  // getPixels needs a software bitmap; EXIF is applied
            }
            classify(bitmap)
        }
        val permission = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) {}

        Column(Modifier.padding(12.dp)) {
            Row { models.forEach { m -> FilterChip(model == m, { model = m; reopen() }, { Text(m.file.name) }) } }
            model?.let { m ->
                Row { acceleratorsFor(m.sidecar).forEach { a -> FilterChip(accelerator == a, { accelerator = a; reopen() }, { Text(a) }) } }
            }
            AndroidView({ context ->
                PreviewView(context).also { view ->
                    permission.launch(Manifest.permission.CAMERA)
                    val controller = LifecycleCameraController(context)
                    controller.setImageAnalysisAnalyzer(ContextCompat.getMainExecutor(context)) { frame: ImageProxy ->
                        frame.use { classify(upright(it)) }
                    }
                    controller.bindToLifecycle(this@MainActivity)
                    view.controller = controller
                }
            }, Modifier.fillMaxWidth().height(280.dp))
            Row {
                Button({ picker.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) }) { Text("Gallery") }
                Button({
                    val m = model
                    val r = runner
                    if (m != null && r != null) {
                        val a = SelfTest.run(m, r)
                        report = if (a == null) "no examples file next to ${m.file.name}" else
                            "self-test on ${a.numExamples} examples (${r.acceleratorUsed}): ${a.status}\n" +
                                "max |diff| %.2e, cosine %.6f, top-1 %.0f%%, top-5 %.0f%%".format(
                                    a.maxAbsDiff, a.cosine, a.top1Agreement * 100, a.top5Agreement * 100)
                    }
                }) { Text("Self-test") }
            }
            Text(report)
        }
        if (runner == null && model != null) reopen()
    }
}
