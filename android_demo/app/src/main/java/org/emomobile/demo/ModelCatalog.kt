package org.emomobile.demo

import android.content.Context
import org.emomobile.core.ExampleSet
import org.emomobile.core.Sidecar
import java.io.File

/** An artifact the app can run: the file, its sidecar, and its bundled examples when present. */
class CatalogModel(val file: File, val sidecar: Sidecar, val examples: ExampleSet?)

/**
 * Every artifact dropped into `assets/` (or pushed into the app's external files folder) with its sidecar is listed:
 * no code change to add a model. Assets are copied once to the app's files folder, because the runtimes open files.
 */
object ModelCatalog {
    private val SUFFIXES = listOf(".tflite", ".onnx", ".ort")

    fun list(context: Context): List<CatalogModel> {
        val folder = File(context.filesDir, "models").apply { mkdirs() }
        val assets = context.assets.list("")?.toList() ?: emptyList()
        for (name in assets) {
            if (SUFFIXES.none { name.endsWith(it) } && !name.endsWith(".json")) continue
            val target = File(folder, name)
            if (!target.exists()) context.assets.open(name).use { input -> target.outputStream().use { input.copyTo(it) } }
        }
        val external = context.getExternalFilesDir(null)
        return listOfNotNull(folder, external).flatMap { dir -> dir.listFiles()?.toList() ?: emptyList() }
            .filter { f -> SUFFIXES.any { f.name.endsWith(it) } }
            .mapNotNull { load(it) }
            .sortedBy { it.file.name }
    }

    /** The artifact with its sidecar (`{stem}.json`), or null when the sidecar is missing or unusable. */
    fun load(file: File): CatalogModel? {
        val stem = file.name.substringBeforeLast('.')
        val sidecarFile = File(file.parentFile, "$stem.json")
        if (!sidecarFile.isFile) return null
        val sidecar = Sidecar.parse(sidecarFile.readText(), sidecarFile.name)
        // `{stem}.examples.json` next to the file (emo-bench pushes under fixed names), else the name the sidecar gives
        val examplesFile = listOfNotNull("$stem.examples.json", sidecar.examplesFile)
            .map { File(file.parentFile, it) }.firstOrNull { it.isFile }
        val examples = examplesFile?.let { ExampleSet.parse(it.readText(), it.name) }
        return CatalogModel(file, sidecar, examples)
    }
}
