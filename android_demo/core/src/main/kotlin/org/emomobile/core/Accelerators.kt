package org.emomobile.core

import org.json.JSONArray
import org.json.JSONException

/**
 * What the core asks an [EngineLoader] to open: the file, the runtime and exactly which options to give it, so the
 * adapter maps fields to API calls and decides nothing.
 */
class LoadPlan(
    /** Absolute path of the artifact. */
    val path: String,
    /** [Runtimes.LITERT] or [Runtimes.ONNXRUNTIME]. */
    val runtime: String,
    /** The accelerator asked for (a name of [Runtimes.accelerators]). */
    val accelerator: String,
    /** CPU threads: LiteRT's `CpuOptions.numThreads` (the CPU part of any accelerator set), ONNX Runtime's intra-op
     * threads (and the XNNPACK EP's). */
    val threads: Int,
    /** LiteRT: the accelerator set for `CompiledModel.Options` ("cpu", "gpu", "npu"); empty for ONNX Runtime. */
    val litertAccelerators: List<String>,
    /** LiteRT GPU precision ("fp32" or "fp16"): the artifact's own precision, so the GPU computes what was exported
     * (LiteRT's default lets an fp32 model run in fp16); null when no GPU is asked for. */
    val gpuPrecision: String?,
    /** ONNX Runtime: the execution provider to add before the CPU one ("xnnpack", "nnapi"), or null for CPU alone. */
    val ortProvider: String?,
    /** ONNX Runtime: profile the session until [AcceleratorReport] has read which provider ran each node. */
    val profileNodes: Boolean,
    /** ONNX Runtime: the session's intra-op threads (1 with XNNPACK, which runs its own [threads]-thread pool, as
     * ONNX Runtime's XNNPACK documentation recommends) and its session config entries. */
    val intraOpThreads: Int,
    val sessionConfig: Map<String, String>,
    /** The graph's input and output names (the sidecar's; LiteRT asks for tensor types by name). */
    val inputName: String,
    val outputName: String,
    /** The whole input's shape (static batch, the sidecar's layout), for ONNX Runtime's tensors. */
    val inputShape: LongArray,
    /** LiteRT on the NPU: create the environment with `DispatchLibraryDir` and `CompilerPluginLibraryDir` set to the
     * app's native library folder, where the vendor's dispatch library (`libLiteRtDispatch_Qualcomm.so`) and QNN
     * libraries are packaged (an NPU-compiled model's `DISPATCH_OP` needs the dispatch library; a plain .tflite on
     * `npu` needs a compiler plugin there to be compiled on the phone). */
    val npuLibraries: Boolean = false
)

/** The runtimes of the Android app, the accelerators each offers, and the plan for one request. */
object Runtimes {
    const val LITERT = "litert"
    const val ONNXRUNTIME = "onnxruntime"

    /** By suffix, not by the sidecar's backend name: an AOT-compiled NPU `.tflite` is still LiteRT's. The formats the
     * Android app runs are the contract's (`android` in emo/contract/vocabulary.json), their runtime family its. */
    private val BY_SUFFIX: Map<String, String> = LinkedHashMap<String, String>().also { table ->
        for (format in Vocabulary.FORMATS) if (format.android) table[format.suffix] = format.runtime
    }
    private val OFFERED = mapOf(LITERT to listOf("cpu", "gpu", "npu"), ONNXRUNTIME to listOf("cpu", "xnnpack", "nnapi"))
    private val REFUSED = mapOf(
        "qnn" to "onnxruntime-android has no QNN execution provider (that is onnxruntime-android-qnn, without " +
            "NNAPI and XNNPACK); the Qualcomm NPU runs through LiteRT: export --format litert-npu and ask for npu"
    )
    val SUFFIXES: List<String> get() = BY_SUFFIX.keys.toList()
    /** The contract's format of a .tflite compiled ahead of time for an NPU: it runs only with [Accelerator.NPU]. */
    const val NPU_COMPILED = "litert-npu"
    private val DISPATCH_LIBRARY = Regex("libLiteRtDispatch_[A-Za-z0-9]+\\.so")

    private val SOC_NAME = Regex("[A-Za-z0-9_-]{1,32}")
    private fun socName(value: String): String = if (SOC_NAME.matches(value)) value else BoundedJson.shown(value)

    /** Whether a LiteRT NPU dispatch library (`libLiteRtDispatch_Qualcomm.so`, ...) is among the app's native
     * libraries: only then does the adapter point LiteRT's environment at them (and LiteRT offer `npu`). */
    fun dispatchLibraryPackaged(nativeLibraries: List<String>): Boolean =
        nativeLibraries.any { DISPATCH_LIBRARY.matches(it) }

    /**
     * Why this phone cannot run the NPU-compiled [sidecar]'s artifact, or null. Checked before `CompiledModel.create`
     * because LiteRT 2.1 aborts the process (`LITERT_FATAL`) when a `DISPATCH_OP` finds no dispatch library or its
     * context binary does not load, which no `catch` can report: no dispatch library packaged, or a phone SoC other
     * than the one the artifact was compiled for (a v75 context binary does not load on a v79 HTP).
     */
    fun npuRefusal(sidecar: Sidecar, npu: NpuFacts): String? {
        if (!dispatchLibraryPackaged(npu.nativeLibraries)) {
            return "no LiteRT NPU dispatch library (libLiteRtDispatch_*.so) is packaged in the app; package the " +
                "vendor's NPU runtime libraries (android_demo/README.md, LiteRT on the NPU)"
        }
        val wanted = sidecar.npuSocModel
        val phone = npu.socModel
        if (wanted != null && phone != null && !wanted.equals(phone, ignoreCase = true)) {
            return "${sidecar.file} is compiled for ${socName(wanted)}, this phone is ${socName(phone)}: export " +
                "with --soc ${socName(phone)}"
        }
        return null
    }

    /** The runtime that opens [fileName], or an error naming the suffixes the app runs. */
    fun forFile(fileName: String): String {
        val suffix = "." + fileName.substringAfterLast('.', "")
        return BY_SUFFIX[suffix] ?: throw ModelContractException("$fileName is not an artifact the Android app runs " +
            "(${SUFFIXES.joinToString()}); export tflite, onnx or ort")
    }

    fun accelerators(runtime: String): List<String> = OFFERED[runtime] ?: emptyList()

    /**
     * The plan for [accelerator] on [fileName], refusing what the runtime does not offer or (where [available] is
     * known: LiteRT's `Environment.getAvailableAccelerators`, ONNX Runtime's `getAvailableProviders`) what this
     * device's build of it cannot do, instead of letting it fall back to the CPU behind the user's back.
     */
    fun plan(path: String, fileName: String, sidecar: Sidecar, accelerator: String, threads: Int,
             available: List<String>?, npu: NpuFacts? = null): LoadPlan {
        val runtime = forFile(fileName)
        val offered = accelerators(runtime)
        if (accelerator !in offered) {
            val why = REFUSED[accelerator] ?: "choose from ${offered.joinToString()}"
            throw IllegalArgumentException("accelerator $accelerator is not offered for $runtime; $why")
        }
        if (sidecar.backend == NPU_COMPILED && accelerator != "npu") {
            throw IllegalArgumentException("$fileName is compiled for one SoC's NPU ($NPU_COMPILED): LiteRT's CPU " +
                "and GPU have no kernel for its DISPATCH_OP; ask for npu, or run the plain tflite export on $accelerator")
        }
        if (sidecar.backend == NPU_COMPILED && npu != null) npuRefusal(sidecar, npu)?.let {
            throw IllegalArgumentException(it)
        }
        if (available != null && accelerator !in available) {
            throw IllegalArgumentException("$accelerator is not available in $runtime on this device " +
                "(available: ${available.joinToString()})")
        }
        if (threads < 1) throw IllegalArgumentException("threads must be at least 1, not $threads")
        val batch = Math.max(sidecar.batch, 1).toLong()
        val h = sidecar.height.toLong()
        val w = sidecar.width.toLong()
        val shape = if (sidecar.layout == "NHWC") longArrayOf(batch, h, w, 3) else longArrayOf(batch, 3, h, w)
        return if (runtime == LITERT) {
            LoadPlan(path, runtime, accelerator, threads, listOf(accelerator),
                if (accelerator == "gpu") (if (sidecar.precision == "fp32") "fp32" else "fp16") else null, null, false,
                threads, emptyMap(), sidecar.inputName, sidecar.outputName, shape, accelerator == "npu")
        } else {
            val xnnpack = accelerator == "xnnpack"
            LoadPlan(path, runtime, accelerator, threads, emptyList(), null,
                if (accelerator == "cpu") null else accelerator, accelerator != "cpu", if (xnnpack) 1 else threads,
                if (xnnpack) mapOf("session.intra_op.allow_spinning" to "0") else emptyMap(), sidecar.inputName,
                sidecar.outputName, shape)
        }
    }
}

/** Requested vs what ran: the `accelerator` object of the result file, and the line the UI shows. */
class AcceleratorReport(
    val requested: String?,
    val used: List<String>,
    val source: String,
    val nodes: Map<String, Int>?,
    val detail: String?
) {
    /** One line for the screen: "gpu", "nnapi 97 + cpu 12 nodes", "npu+cpu (as configured)". */
    fun summary(): String {
        val n = nodes
        if (n != null && n.isNotEmpty()) return n.entries.joinToString(" + ") { "${it.key} ${it.value}" } + " nodes"
        val names = if (used.isEmpty()) "nothing ran" else used.joinToString("+")
        return if (source == SOURCE_OPTIONS) "$names (as configured)" else names
    }

    companion object {
        const val SOURCE_OPTIONS = "options: the runtime does not report where each op ran"
        const val SOURCE_ORT_PROFILE = "onnxruntime profile: the provider of every node of the first run"
        const val SOURCE_NONE = "nothing ran"
        const val SOURCE_LITERT = "litert: whether the compiled model is fully accelerated"

        /** ONNX Runtime execution-provider names -> the accelerator names of requests and results. */
        private val PROVIDERS = mapOf(
            "CPUExecutionProvider" to "cpu", "XnnpackExecutionProvider" to "xnnpack",
            "NnapiExecutionProvider" to "nnapi", "QNNExecutionProvider" to "qnn"
        )

        fun acceleratorOf(provider: String): String =
            PROVIDERS[provider] ?: Check.lower(provider.removeSuffix("ExecutionProvider"))

        /**
         * LiteRT's Kotlin API reports no placement (`IsFullyAccelerated` is C++ only): [used] is the accelerator
         * set it was given, plus the CPU that `CompiledModel.create` itself adds to an NPU-only set for the ops an
         * AOT-compiled model leaves to it.
         */
        fun litert(plan: LoadPlan, available: List<String>?, fullyAccelerated: Boolean? = null): AcceleratorReport {
            if (fullyAccelerated != null && plan.accelerator != "cpu") {  // the runtime's own word, when it gives it
                return AcceleratorReport(plan.accelerator,
                    if (fullyAccelerated) listOf(plan.accelerator) else listOf(plan.accelerator, "cpu"), SOURCE_LITERT,
                    null, if (fullyAccelerated) null else "some ops run on the CPU")
            }
            val used = if (plan.litertAccelerators == listOf("npu")) listOf("npu", "cpu") else plan.litertAccelerators
            val detail = StringBuilder()
            if (plan.gpuPrecision != null) detail.append("GPU precision ${plan.gpuPrecision}")
            if (available != null) {
                if (detail.isNotEmpty()) detail.append("; ")
                detail.append("available: ${available.joinToString()}")
            }
            return AcceleratorReport(plan.accelerator, used, SOURCE_OPTIONS, null,
                if (detail.isEmpty()) null else detail.toString())
        }

        /** From the nodes per execution provider of an ONNX Runtime profile ([OrtProfile.nodesPerProvider]). */
        fun onnxruntime(plan: LoadPlan, providerNodes: Map<String, Int>?): AcceleratorReport {
            val provider = plan.ortProvider
            if (providerNodes == null || providerNodes.isEmpty()) {
                val used = if (provider == null) listOf("cpu") else listOf(provider, "cpu")
                return AcceleratorReport(plan.accelerator, used, SOURCE_OPTIONS, null,
                    if (provider == null) null else "no profile: nodes may have fallen back to the CPU")
            }
            val nodes = LinkedHashMap<String, Int>()
            for ((provider, count) in providerNodes.entries.sortedBy { -it.value }) {
                val name = acceleratorOf(provider)
                nodes[name] = (nodes[name] ?: 0) + count
            }
            val wanted = provider
            val detail = if (wanted != null && nodes.keys != setOf(wanted)) {
                "${nodes[wanted] ?: 0} of ${nodes.values.sum()} nodes on $wanted (nodes after partitioning: a " +
                    "partition the provider took counts once)"
            } else {
                null
            }
            return AcceleratorReport(plan.accelerator, nodes.keys.toList(), SOURCE_ORT_PROFILE, nodes, detail)
        }

        /** A run that failed before a runtime ran anything. */
        fun none(requested: String?): AcceleratorReport = AcceleratorReport(requested, emptyList(), SOURCE_NONE, null, null)
    }
}

/**
 * ONNX Runtime's profile (`SessionOptions.enableProfiling`, a Chrome-trace JSON array written by `endProfiling`):
 * every node of a run is an event of category "Node" named `{node}_kernel_time` whose `args.provider` is the
 * execution provider that ran it. Counting the distinct nodes per provider is the truth about CPU fallback.
 */
object OrtProfile {
    fun nodesPerProvider(json: String): Map<String, Int> {
        val events = try {
            JSONArray(json)
        } catch (e: JSONException) {
            throw ModelContractException("the ONNX Runtime profile is not a JSON array: ${e.message}")
        }
        val seen = HashMap<String, String>()
        for (i in 0 until events.length()) {
            val event = events.optJSONObject(i) ?: continue
            val name = event.optString("name")
            if (event.optString("cat") != "Node" || !name.endsWith("_kernel_time")) continue
            val provider = event.optJSONObject("args")?.optString("provider") ?: continue
            if (provider.isNotEmpty()) seen[name.removeSuffix("_kernel_time")] = provider
        }
        val counts = LinkedHashMap<String, Int>()
        for (provider in seen.values.sorted()) counts[provider] = (counts[provider] ?: 0) + 1
        return counts
    }
}
