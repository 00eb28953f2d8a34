package org.emomobile.core

/**
 * One artifact the app can run: file names inside one folder (the artifact, its sidecar, its examples if any);
 * [folder] names that folder for the screen ("" for the benchmark's one folder).
 */
class CatalogEntry(val artifact: String, val sidecar: String, val examples: String?, val folder: String = "")

/** An entry read: its sidecar parsed, its examples decoded (null without an examples file); [title] is what the
 * screen lists, unique among the app's models ([ModelCatalog.scan]). */
class CatalogModel(val entry: CatalogEntry, val sidecar: Sidecar, val examples: ExampleSet?,
                   val title: String = entry.artifact)

/** The folder's artifacts and, for each file that looked like one but cannot be used, why. */
class CatalogListing(val entries: List<CatalogEntry>, val skipped: List<String>)

/** A folder the app lists models from: its name for the screen and the names of its files. */
class CatalogFolder(val name: String, val files: List<String>)

/** Every model of the app's folders, each with a unique [CatalogModel.title], and what was skipped and why. */
class CatalogScan(val models: List<CatalogModel>, val skipped: List<String>) {
    val titles: List<String> get() = models.map { it.title }

    fun byTitle(title: String): CatalogModel? = models.firstOrNull { it.title == title }

    /** What the screen says about the scan: nothing to say, or why there is no model and what was skipped. */
    fun summary(hint: String): String =
        ((if (models.isEmpty()) listOf("no models: $hint") else emptyList()) + skipped).joinToString("\n")
}

/**
 * Adding a model is dropping files: every artifact (`.tflite`, `.onnx`, `.ort`) with its sidecar `{stem}.json` in a
 * folder listing is a model; its examples are `{stem}.examples.json` (emo-bench pushes fixed names) or the name its
 * sidecar gives. Decided from the names alone, so the JVM tests cover what the app lists.
 */
object ModelCatalog {
    /** The files the app copies out of its APK assets (artifacts, sidecars, examples). */
    fun isModelFile(name: String): Boolean =
        !name.startsWith(".") && (Runtimes.SUFFIXES.any { name.endsWith(it) } || name.endsWith(".json"))

    fun discover(names: Collection<String>, folder: String = ""): CatalogListing {
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
            entries.add(CatalogEntry(name, sidecar, if (examples in present) examples else null, folder))
        }
        return CatalogListing(entries, skipped)
    }

    /**
     * Every model of [folders], read through [read] (folder, file name -> bytes). An artifact name found in more
     * than one folder is listed as "name (folder)", so that each copy can be chosen and is opened with its own
     * sidecar; a model that cannot be read is skipped with the reason.
     */
    fun scan(folders: List<CatalogFolder>, read: (CatalogFolder, String) -> ByteArray): CatalogScan {
        val models = ArrayList<CatalogModel>()
        val skipped = ArrayList<String>()
        for (folder in folders) {
            val listing = discover(folder.files, folder.name)
            skipped += listing.skipped
            for (entry in listing.entries) {
                try {
                    models += open(entry, folder.files) { read(folder, it) }
                } catch (e: Exception) {
                    skipped += "${entry.artifact}: ${Benchmark.reason(e)}"
                }
            }
        }
        val copies = HashMap<String, Int>()
        for (m in models) copies[m.entry.artifact] = (copies[m.entry.artifact] ?: 0) + 1
        val titled = models.map { m ->
            if (copies[m.entry.artifact] == 1) m else CatalogModel(m.entry, m.sidecar, m.examples,
                "${m.entry.artifact} (${m.entry.folder})")
        }
        return CatalogScan(titled, skipped)
    }

    /** The entry of [artifact] in [names], or an error saying what is missing. */
    fun find(artifact: String, names: Collection<String>): CatalogEntry {
        if (artifact !in names) throw ModelContractException("no $artifact in the benchmark folder; push it first")
        val listing = discover(names)
        return listing.entries.firstOrNull { it.artifact == artifact }
            ?: throw ModelContractException(listing.skipped.firstOrNull { it.startsWith("$artifact:") } ?: "no $artifact")
    }

    /**
     * Read an entry's sidecar and examples through [read] (file name -> bytes); [names] is the folder listing. An
     * examples file made for another artifact (its `artifact` is not the sidecar's `file`: a file left by an earlier
     * run, or copied beside the wrong model) is refused, never used to judge this one.
     */
    fun open(entry: CatalogEntry, names: Collection<String>, read: (String) -> ByteArray): CatalogModel {
        val sidecar = Sidecar.parse(read(entry.sidecar), entry.sidecar)
        val named = sidecar.examplesFile
        val examplesName = entry.examples ?: (if (named != null && named in names) named else null)
        val examples = if (examplesName == null) null else ExampleSet.parse(read(examplesName), examplesName)
        if (examples != null && examples.artifact.isNotEmpty() && examples.artifact != sidecar.file) {
            throw ModelContractException("$examplesName holds the examples of ${BoundedJson.shown(examples.artifact)}" +
                " but ${entry.sidecar} describes ${BoundedJson.shown(sidecar.file)}; copy the artifact's own " +
                "examples file (emo-export writes it beside the artifact)")
        }
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

/** A session just opened for a plan, with what the runtime offered and how long opening took (`load_ms`). */
class LoadedModel(val session: ModelSession, val plan: LoadPlan, val available: List<String>?, val loadMs: Double)

/**
 * What the first inferences say: the self-test on the bundled examples (or one neutral input without them), the
 * first inference timed, the runtime's own report and, from it, what ran ([AcceleratorReport]).
 */
class Probe(val inputs: List<FloatArray>, val firstInferenceMs: Double, val parity: Agreement?,
            val engine: EngineReport, val accelerator: AcceleratorReport)

/** A session ready for the screen: opened and probed; [ran] is the line the screen shows after every result. */
class OpenedModel(val session: ModelSession, val probe: Probe) {
    val ran: String get() = probe.accelerator.summary()
}

/**
 * The headless benchmark (`android_demo/BENCHMARK_MODE.md`), start to result: parse the request, find the model,
 * plan and load it (timed), probe it (the self-test on the bundled examples, the first inference timed as
 * `first_inference_ms`, then what ran), warm up, time the iterations, and assemble the result file. Any failure
 * becomes a result with `status` "failed: <reason>" and every field known by then. The demo screen opens its
 * models with the same [load] and [probe] ([openAndProbe]), so what it says ran is what a benchmark reports.
 */
object Benchmark {
    /** The result schema's bound on `status`. */
    private const val MAX_STATUS = 2000

    fun run(extras: Map<String, String>, context: BenchmarkContext): AppBenchResult {
        val clock = context.clock
        var artifact = BenchmarkRequest.artifactOf(extras)
        var request = BenchmarkRequest.partial(extras)
        var runtime = "none"
        var runtimeVersion: String? = null
        var accelerator = AcceleratorReport.none(request["accelerator"] as String?)
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
            val loaded = load(model, context.folder + "/" + req.model, req.accelerator, req.threads, context.loader,
                clock)
            loadMs = loaded.loadMs
            loaded.session.use { session ->
                val probe = probe(model, loaded, clock)
                firstMs = probe.firstInferenceMs
                parity = probe.parity
                runtimeVersion = probe.engine.runtimeVersion
                threads = probe.engine.threads
                accelerator = probe.accelerator
                val input = probe.inputs[0]
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
            status = "failed: " + BenchmarkRequest.bounded(reason(e), MAX_STATUS - "failed: ".length)
            latencies = DoubleArray(0)
        }
        return AppBenchResult(artifact, runtime, runtimeVersion, request, accelerator, threads, io, loadMs, firstMs,
            latencies, context.peakMemoryMb(), context.device, status, context.appVersion, parity)
    }

    /**
     * Plan [model] (the file at [path]) on [accelerator] with [threads] CPU threads, refusing what this device's
     * runtime does not offer ([Runtimes.plan]), and open it; the opening is timed.
     */
    fun load(model: CatalogModel, path: String, accelerator: String, threads: Int, loader: EngineLoader,
             clock: Clock): LoadedModel {
        val available = loader.available(Runtimes.forFile(model.entry.artifact))
        val plan = Runtimes.plan(path, model.entry.artifact, model.sidecar, accelerator, threads, available,
            loader.npu())
        val start = clock.nanos()
        val session = open(model.sidecar, loader, plan)
        return LoadedModel(session, plan, available, millis(clock.nanos() - start))
    }

    /**
     * The self-test on the bundled examples (a neutral input without them; the first inference timed), then the
     * runtime's report (ONNX Runtime ends its profile here: later runs are not profiled) and what ran.
     */
    fun probe(model: CatalogModel, loaded: LoadedModel, clock: Clock): Probe {
        val inputs = model.examples?.examples?.map { it.input } ?: listOf(neutralInput(model.sidecar))
        val outputs = ArrayList<FloatArray>()
        var first = 0.0
        for (input in inputs) {
            val t = clock.nanos()
            outputs.add(loaded.session.run(input))
            if (outputs.size == 1) first = millis(clock.nanos() - t)
        }
        val report = loaded.session.engine.report()
        val accelerator = if (loaded.plan.runtime == Runtimes.LITERT) {
            AcceleratorReport.litert(loaded.plan, loaded.available, report.fullyAccelerated)
        } else {
            AcceleratorReport.onnxruntime(loaded.plan, report.providerNodes)
        }
        return Probe(inputs, first, model.examples?.agreement(outputs), report, accelerator)
    }

    /** For the screen: [load] and [probe]; the session is closed when either fails, so a broken engine (a GPU that
     * compiles the model but fails to run it) is never kept. */
    fun openAndProbe(model: CatalogModel, path: String, accelerator: String, threads: Int, loader: EngineLoader,
                     clock: Clock): OpenedModel {
        val loaded = load(model, path, accelerator, threads, loader, clock)
        try {
            return OpenedModel(loaded.session, probe(model, loaded, clock))
        } catch (e: Throwable) {
            loaded.session.close()
            throw e
        }
    }

    /** A constant mid-grey input for a model without examples (what the probe feeds). */
    fun neutralInput(sidecar: Sidecar): FloatArray = FloatArray(sidecar.inputSize) { 0.5f }

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
