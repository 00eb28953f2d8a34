package org.emomobile.core

/** One artifact the app can run: file names inside one folder (the artifact, its sidecar, its examples if any). */
class CatalogEntry(val artifact: String, val sidecar: String, val examples: String?)

/** An entry read: its sidecar parsed, its examples decoded (null without an examples file). */
class CatalogModel(val entry: CatalogEntry, val sidecar: Sidecar, val examples: ExampleSet?)

/** The folder's artifacts and, for each file that looked like one but cannot be used, why. */
class CatalogListing(val entries: List<CatalogEntry>, val skipped: List<String>)

/**
 * Adding a model is dropping files: every artifact (`.tflite`, `.onnx`, `.ort`) with its sidecar `{stem}.json` in a
 * folder listing is a model; its examples are `{stem}.examples.json` (emo-bench pushes fixed names) or the name its
 * sidecar gives. Decided from the names alone, so the JVM tests cover what the app lists.
 */
object ModelCatalog {
    /** The files the app copies out of its APK assets (artifacts, sidecars, examples). */
    fun isModelFile(name: String): Boolean =
        !name.startsWith(".") && (Runtimes.SUFFIXES.any { name.endsWith(it) } || name.endsWith(".json"))

    fun discover(names: Collection<String>): CatalogListing {
        val present = names.toSet()
        val entries = ArrayList<CatalogEntry>()
        val skipped = ArrayList<String>()
        for (name in names.sorted()) {
            if (name.startsWith(".") || Runtimes.SUFFIXES.none { name.endsWith(it) }) continue
            val stem = name.substringBeforeLast('.')
            val sidecar = "$stem.json"
            if (sidecar !in present) {
                skipped.add("$name: no sidecar $sidecar next to it; copy emo-export's whole output")
                continue
            }
            val examples = "$stem.examples.json"
            entries.add(CatalogEntry(name, sidecar, if (examples in present) examples else null))
        }
        return CatalogListing(entries, skipped)
    }

    /** The entry of [artifact] in [names], or an error saying what is missing. */
    fun find(artifact: String, names: Collection<String>): CatalogEntry {
        if (artifact !in names) throw ModelContractException("no $artifact in the benchmark folder; push it first")
        val listing = discover(names)
        return listing.entries.firstOrNull { it.artifact == artifact }
            ?: throw ModelContractException(listing.skipped.firstOrNull { it.startsWith("$artifact:") } ?: "no $artifact")
    }

    /** Read an entry's sidecar and examples through [read] (file name -> bytes); [names] is the folder listing. */
    fun open(entry: CatalogEntry, names: Collection<String>, read: (String) -> ByteArray): CatalogModel {
        val sidecar = Sidecar.parse(read(entry.sidecar), entry.sidecar)
        val named = sidecar.examplesFile
        val examplesName = entry.examples ?: (if (named != null && named in names) named else null)
        val examples = if (examplesName == null) null else ExampleSet.parse(read(examplesName), examplesName)
        if (examples != null && examples.examples[0].input.size != sidecar.inputSize) {
            throw ModelContractException("$examplesName holds inputs of ${examples.examples[0].input.size} values, " +
                "${entry.sidecar} says ${sidecar.inputSize}; re-export the artifact")
        }
        if (examples != null && examples.examples[0].output.size != sidecar.numClasses) {
            throw ModelContractException("$examplesName holds outputs of ${examples.examples[0].output.size} values, " +
                "${entry.sidecar} says ${sidecar.numClasses} classes; re-export the artifact")
        }
        return CatalogModel(entry, sidecar, examples)
    }
}

/** Everything the benchmark needs from the platform, as values and small functions (fakes in the JVM tests). */
class BenchmarkContext(
    /** Absolute path of the benchmark folder (`<external files>/emo-bench`). */
    val folder: String,
    /** The names of the files in it. */
    val listing: List<String>,
    /** A file of the folder, by name, as bytes (the readers check its size and its UTF-8). */
    val read: (String) -> ByteArray,
    val loader: EngineLoader,
    val clock: Clock,
    /** The process's peak memory so far, in MB (`VmHWM`), or null. */
    val peakMemoryMb: () -> Double?,
    val device: DeviceInfo,
    val appVersion: String
)

/**
 * The headless benchmark (`android_demo/BENCHMARK_MODE.md`), start to result: parse the request, find the model,
 * plan and load it (timed), run the self-test on the bundled examples (the first inference is timed as
 * `first_inference_ms`), ask the runtime what ran, warm up, time the iterations, and assemble the result file.
 * Any failure becomes a result with `status` "failed: <reason>" and every field known by then.
 */
object Benchmark {
    fun run(extras: Map<String, String>, context: BenchmarkContext): AppBenchResult {
        val clock = context.clock
        var artifact = extras["model"] ?: "?"
        var request = BenchmarkRequest.partial(extras)
        var runtime = "none"
        var runtimeVersion: String? = null
        var accelerator = AcceleratorReport.none(extras["accelerator"])
        var threads: Int? = null
        var io = Pair("float32", "float32")
        var loadMs: Double? = null
        var firstMs: Double? = null
        var latencies = DoubleArray(0)
        var parity: Agreement? = null
        var status: String
        try {
            val req = BenchmarkRequest.parse(extras)
            artifact = req.model
            request = mapOf("accelerator" to req.accelerator, "threads" to req.threads, "warmup" to req.warmup,
                "iterations" to req.iterations)
            val model = ModelCatalog.open(ModelCatalog.find(req.model, context.listing), context.listing, context.read)
            runtime = Runtimes.forFile(req.model)
            io = Pair(model.sidecar.inputSpec.dtype, model.sidecar.outputSpec.dtype)
            val available = context.loader.available(runtime)
            val plan = Runtimes.plan(context.folder + "/" + req.model, req.model, model.sidecar, req.accelerator,
                req.threads, available)
            val start = clock.nanos()
            open(model.sidecar, context.loader, plan).use { session ->
                loadMs = millis(clock.nanos() - start)
                val inputs = model.examples?.examples?.map { it.input } ?: listOf(FloatArray(model.sidecar.inputSize) { 0.5f })
                val outputs = ArrayList<FloatArray>()
                for (input in inputs) {
                    val t = clock.nanos()
                    outputs.add(session.run(input))
                    if (firstMs == null) firstMs = millis(clock.nanos() - t)
                }
                val examples = model.examples
                if (examples != null) parity = examples.agreement(outputs)
                val report = session.engine.report()
                runtimeVersion = report.runtimeVersion
                threads = report.threads
                accelerator = if (runtime == Runtimes.LITERT) {
                    AcceleratorReport.litert(plan, available, report.fullyAccelerated)
                } else {
                    AcceleratorReport.onnxruntime(plan, report.providerNodes)
                }
                val input = inputs[0]
                for (i in 0 until req.warmup) session.run(input)
                latencies = DoubleArray(req.iterations)
                for (i in 0 until req.iterations) {
                    val t = clock.nanos()
                    session.run(input)
                    latencies[i] = millis(clock.nanos() - t)
                }
            }
            status = "ok"
        } catch (e: Throwable) {
            status = "failed: " + reason(e)
            latencies = DoubleArray(0)
        }
        return AppBenchResult(artifact, runtime, runtimeVersion, request, accelerator, threads, io, loadMs, firstMs,
            latencies, context.peakMemoryMb(), context.device, status, context.appVersion, parity)
    }

    /** A session, closing the engine if the sidecar's contract refuses it. */
    fun open(sidecar: Sidecar, loader: EngineLoader, plan: LoadPlan): ModelSession {
        val engine = loader.load(plan)
        try {
            return ModelSession(sidecar, engine)
        } catch (e: Throwable) {
            engine.close()
            throw e
        }
    }

    /** An exception as one line: its first message line, else its type. */
    fun reason(e: Throwable): String {
        val line = e.message?.lineSequence()?.firstOrNull()?.trim()
        return if (line.isNullOrEmpty()) e.javaClass.simpleName else line
    }

    private fun millis(nanos: Long): Double = nanos / 1e6
}
