package org.emomobile.core

import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/**
 * The app's decisions, tested without a phone: the benchmark request, the model catalog, the run loop and its result
 * file, full-integer I/O and the accelerator report. The runtime is replaced by replay engines that answer with what
 * the real runtimes computed on the host (`tests/test_android_core.py` records them): PyTorch's outputs for the float
 * artifacts, and for the int8 `.tflite` the bytes LiteRT's interpreter returned for the bytes `emo.export.tflite`
 * quantized, so a single differing input byte fails the test. System properties: `emo.artifacts` (float exports),
 * `emo.int8` (an int8 NHWC `.tflite` export with `int8-reference.json`), `emo.ortprofile` (an ONNX Runtime profile of
 * the float ONNX export, with `expected.json`), `emo.out` (files the Python side reads back).
 */
class AppCoreTest {
    private fun folder(property: String) = File(System.getProperty(property) ?: error("-D$property=DIR is required"))

    /** A clock that advances [stepNanos] at every reading: every timed span is exactly one step. */
    class StepClock(private val stepNanos: Long) : Clock {
        private var now = 0L
        override fun nanos(): Long {
            now += stepNanos
            return now
        }
    }

    /** Answers float inputs it was told about with their recorded outputs, anything else with an error. */
    class ReplayEngine(
        private val floats: Map<List<Float>, FloatArray>,
        private val bytes: Map<List<Byte>, ByteArray>,
        override val inputType: String,
        override val outputType: String,
        private val report: EngineReport
    ) : Engine {
        var runs = 0
        var closed = false

        override fun runFloats(input: FloatArray): FloatArray {
            runs++
            return floats[input.toList()]?.copyOf() ?: throw IllegalStateException("unexpected float input")
        }

        override fun runBytes(input: ByteArray): ByteArray {
            runs++
            return bytes[input.toList()]?.copyOf() ?: throw IllegalStateException("unexpected quantized input")
        }

        override fun report(): EngineReport = report

        override fun close() {
            closed = true
        }
    }

    class FixedLoader(private val engine: Engine, private val available: List<String>?) : EngineLoader {
        var plan: LoadPlan? = null
        override fun available(runtime: String): List<String>? = available
        override fun load(plan: LoadPlan): Engine {
            this.plan = plan
            return engine
        }
    }

    private val pixel = DeviceInfo.android("Pixel 8", "Google", "Tensor G3", "gs301", "15", 35, listOf("arm64-v8a"))

    /** A benchmark folder holding an export's files under emo-bench's fixed names (model.*, model.json...). */
    private fun benchFolder(export: File, artifact: File): Map<String, String> {
        val stem = artifact.name.substringBeforeLast('.')
        val suffix = artifact.name.substringAfterLast('.')
        val files = LinkedHashMap<String, String>()
        files["model.$suffix"] = "(the artifact: engines read the file, the core never does)"
        files["model.json"] = File(export, "$stem.json").readText()
        val examples = File(export, "$stem.examples.json")
        if (examples.exists()) files["model.examples.json"] = examples.readText()
        return files
    }

    private fun context(files: Map<String, String>, loader: EngineLoader, memory: Double? = 91.5) = BenchmarkContext(
        "/sdcard/Android/data/org.emomobile.demo/files/emo-bench", files.keys.toList(),
        { name -> (files[name] ?: throw java.io.FileNotFoundException(name)).toByteArray(Charsets.UTF_8) }, loader,
        StepClock(2_000_000),
        { memory }, pixel, "0.2.0")

    private fun floatExport(suffix: String): Pair<File, File> {
        for (dir in folder("emo.artifacts").listFiles()!!.sortedBy { it.name }) {
            val artifact = dir.listFiles()!!.firstOrNull { it.name.endsWith(suffix) } ?: continue
            return Pair(dir, artifact)
        }
        throw AssertionError("no $suffix export in emo.artifacts")
    }

    private fun replayOfExamples(sidecar: Sidecar, set: ExampleSet, report: EngineReport): ReplayEngine {
        val batch = Math.max(sidecar.batch, 1)
        val table = HashMap<List<Float>, FloatArray>()
        for (e in set.examples) {
            val input = FloatArray(e.input.size * batch) { e.input[it % e.input.size] }
            table[input.toList()] = FloatArray(e.output.size * batch) { e.output[it % e.output.size] }
        }
        return ReplayEngine(table, emptyMap(), "float32", "float32", report)
    }

    @Test
    fun floatTfliteBenchmarkEndToEnd() {
        val (dir, artifact) = floatExport(".tflite")
        val files = benchFolder(dir, artifact)
        val sidecar = Sidecar.parse(files["model.json"]!!)
        val set = ExampleSet.parse(files["model.examples.json"]!!)
        val engine = replayOfExamples(sidecar, set, EngineReport(null, 4, null))
        val loader = FixedLoader(engine, listOf("cpu", "gpu"))
        val extras = mapOf("model" to "model.tflite", "accelerator" to "gpu", "threads" to "4", "warmup" to "3",
            "iters" to "5", "output" to "result.json")
        val result = Benchmark.run(extras, context(files, loader))
        assertEquals(result.status, "ok", result.status)
        val plan = loader.plan!!
        assertEquals("litert", plan.runtime)
        assertEquals(listOf("gpu"), plan.litertAccelerators)
        assertEquals("an fp32 artifact keeps fp32 on the GPU", "fp32", plan.gpuPrecision)
        assertTrue(plan.path.endsWith("/emo-bench/model.tflite"))
        // 3 self-test examples, 3 warm-up, 5 timed: every one through the engine, then closed
        assertEquals(3 + 3 + 5, engine.runs)
        assertTrue(engine.closed)
        assertEquals(5, result.latenciesMs.size)
        assertTrue(result.latenciesMs.all { it == 2.0 })
        assertEquals(2.0, result.loadMs!!, 0.0)
        assertEquals(2.0, result.firstInferenceMs!!, 0.0)
        val parity = result.parity!!
        assertTrue(parity.status, parity.passed)
        assertEquals(0.0, parity.maxAbsDiff, 0.0)
        assertEquals(listOf("gpu"), result.accelerator.used)
        assertEquals(AcceleratorReport.SOURCE_OPTIONS, result.accelerator.source)
        assertEquals(4, result.threads)
        val json = result.toJson()
        assertEquals("emo-mobile/app-bench/1", json.getString("schema"))
        assertEquals("Android 15 (API 35)", json.getJSONObject("device").getString("os"))
        assertEquals(91.5, json.getDouble("peak_memory_mb"), 0.0)
        assertEquals(5, json.getJSONObject("request").getInt("iterations"))
        result.writeTo(File(folder("emo.out"), "app-bench-android-ok.json"))
    }

    @Test
    fun int8TfliteIsQuantizedBitForBitAndItsParityIsTheHosts() {
        val dir = folder("emo.int8")
        val artifact = dir.listFiles()!!.first { it.name.endsWith(".tflite") }
        val files = benchFolder(dir, artifact)
        val sidecar = Sidecar.parse(files["model.json"]!!)
        assertEquals("int8", sidecar.inputSpec.dtype)
        assertEquals("int8", sidecar.outputSpec.dtype)
        val reference = JSONObject(File(dir, "int8-reference.json").readText())
        val records = reference.getJSONArray("examples")
        val set = ExampleSet.parse(files["model.examples.json"]!!)
        val table = HashMap<List<Byte>, ByteArray>()
        for (i in 0 until records.length()) {
            val record = records.getJSONObject(i)
            val input = Base64.decode(record.getString("input_int8"))
            // the core quantizes the stored tensor to the very bytes emo.export.tflite fed the interpreter
            assertArrayEquals("example $i", input, Quantization.quantize(set.examples[i].input, sidecar.inputSpec))
            val output = Base64.decode(record.getString("output_int8"))
            val hostFloats = ExampleSet.decode(BoundedJson.parse(record.getJSONObject("output_dequantized").toString(),
                "reference"), "reference")
            assertArrayEquals(hostFloats, Quantization.dequantize(output, sidecar.outputSpec), 0f)
            table[input.toList()] = output
        }
        val engine = ReplayEngine(emptyMap(), table, "int8", "int8", EngineReport(null, 2, null))
        val extras = mapOf("model" to "model.tflite", "accelerator" to "cpu", "threads" to "2", "warmup" to "1",
            "iters" to "2")
        val result = Benchmark.run(extras, context(files, FixedLoader(engine, null)))
        assertEquals("ok", result.status)
        assertEquals(Pair("int8", "int8"), result.io)
        val parity = result.parity!!
        assertEquals(reference.getString("status"), parity.status)
        assertEquals(reference.getDouble("max_abs_diff"), parity.maxAbsDiff, 0.0)
        assertEquals(reference.getDouble("top1_agreement"), parity.top1Agreement, 0.0)
        result.writeTo(File(folder("emo.out"), "app-bench-android-int8.json"))

        // a runtime that sees float32 where the sidecar says int8: refused, and the engine is closed
        val wrong = ReplayEngine(emptyMap(), emptyMap(), "float32", "float32", EngineReport(null, 2, null))
        val refused = Benchmark.run(extras, context(files, FixedLoader(wrong, null)))
        assertTrue(refused.status, refused.status.startsWith("failed: the model's input is float32 but its sidecar says int8"))
        assertTrue(wrong.closed)
        assertEquals(0, refused.latenciesMs.size)
    }

    @Test
    fun quantizationRoundsHalfToEvenAndClips() {
        // 0.25 / 0.5 = 0.5 and 1.25 / 0.5 = 2.5 round to the even 0 and 2, as NumPy rounds
        val spec = TensorSpec("int8", 0.5f, -3)
        assertArrayEquals(byteArrayOf(-3, -3, -1, -1, 127, -128), Quantization.quantize(
            floatArrayOf(0f, 0.25f, 0.75f, 1.25f, 1000f, -1000f), spec))
        assertArrayEquals(floatArrayOf(1.5f, -62.5f), Quantization.dequantize(byteArrayOf(0, -128), spec), 0f)
        val unsigned = TensorSpec("uint8", 1f, 128)
        assertArrayEquals(floatArrayOf(127f, -128f), Quantization.dequantize(byteArrayOf(-1, 0), unsigned), 0f)
        assertArrayEquals(byteArrayOf(-1, 0), Quantization.quantize(floatArrayOf(300f, -300f), unsigned))
    }

    @Test
    fun onnxRuntimeReportsTheProvidersOfItsOwnProfile() {
        val dir = folder("emo.ortprofile")
        val expected = JSONObject(File(dir, "expected.json").readText())
        val nodes = OrtProfile.nodesPerProvider(File(dir, "profile.json").readText())
        assertEquals(mapOf("CPUExecutionProvider" to expected.getInt("nodes")), nodes)
        val (export, onnx) = floatExport(".onnx")
        val sidecar = Sidecar.parse(File(export, onnx.name.substringBeforeLast('.') + ".json").readText())
        val plan = Runtimes.plan("/x/model.onnx", "model.onnx", sidecar, "nnapi", 4, listOf("cpu", "nnapi", "xnnpack"))
        assertEquals("nnapi", plan.ortProvider)
        assertTrue("an EP is profiled to learn where its nodes ran", plan.profileNodes)
        val allCpu = AcceleratorReport.onnxruntime(plan, nodes)
        assertEquals(listOf("cpu"), allCpu.used)
        assertEquals(AcceleratorReport.SOURCE_ORT_PROFILE, allCpu.source)
        assertEquals("0 of ${expected.getInt("nodes")} nodes on nnapi (nodes after partitioning: a partition the " +
            "provider took counts once)", allCpu.detail)
        val mixed = AcceleratorReport.onnxruntime(plan, mapOf("NnapiExecutionProvider" to 3, "CPUExecutionProvider" to 9))
        assertEquals(listOf("cpu", "nnapi"), mixed.used)
        assertEquals("cpu 9 + nnapi 3 nodes", mixed.summary())
        assertEquals(listOf("nnapi", "cpu"), AcceleratorReport.onnxruntime(plan, null).used)
        assertFalse(Runtimes.plan("/x/m.onnx", "m.onnx", sidecar, "cpu", 4, null).profileNodes)
        val xnnpack = Runtimes.plan("/x/m.onnx", "m.onnx", sidecar, "xnnpack", 4, null)
        assertEquals("XNNPACK runs its own pool: ONNX Runtime's stays at one thread, without spinning", 1,
            xnnpack.intraOpThreads)
        assertEquals(mapOf("session.intra_op.allow_spinning" to "0"), xnnpack.sessionConfig)
        assertEquals(4, xnnpack.threads)
        assertArrayEquals(longArrayOf(1, 3, 224, 224), xnnpack.inputShape)
    }

    @Test
    fun acceleratorsAreRefusedNotSilentlyReplaced() {
        val (dir, artifact) = floatExport(".tflite")
        val files = benchFolder(dir, artifact)
        val sidecar = Sidecar.parse(files["model.json"]!!)
        val set = ExampleSet.parse(files["model.examples.json"]!!)
        fun run(accelerator: String, available: List<String>?): AppBenchResult {
            val engine = replayOfExamples(sidecar, set, EngineReport(null, 4, null))
            return Benchmark.run(mapOf("model" to "model.tflite", "accelerator" to accelerator, "iters" to "1"),
                context(files, FixedLoader(engine, available)))
        }
        val noGpu = run("gpu", listOf("cpu"))
        assertEquals("failed: gpu is not available in litert on this device (available: cpu)", noGpu.status)
        assertEquals("litert", noGpu.runtime)
        assertEquals(emptyList<String>(), noGpu.accelerator.used)
        assertEquals("failed: accelerator nnapi is not offered for litert; choose from cpu, gpu, npu",
            run("nnapi", null).status)
        val npu = run("npu", listOf("cpu", "gpu", "npu"))
        assertEquals("ok", npu.status)
        // LiteRT adds the CPU to an NPU-only set; its Kotlin API does not say which ops ran where
        assertEquals(listOf("npu", "cpu"), npu.accelerator.used)
        assertEquals("npu+cpu (as configured)", npu.accelerator.summary())
        // the hook for the NPU artifact: an adapter that can ask LiteRT (C++ IsFullyAccelerated) reports the truth
        val npuPlan = Runtimes.plan("/x/m.tflite", "m.tflite", sidecar, "npu", 4, null)
        assertEquals(listOf("npu"), AcceleratorReport.litert(npuPlan, null, true).used)
        val partly = AcceleratorReport.litert(npuPlan, null, false)
        assertEquals(listOf("npu", "cpu"), partly.used)
        assertEquals(AcceleratorReport.SOURCE_LITERT, partly.source)
        // an NPU-compiled .tflite (litert-npu) runs only on the NPU: any other accelerator is refused, not tried
        val compiled = Sidecar.parse(JSONObject(files["model.json"]!!).put("backend", "litert-npu")
            .put("precision", "fp16").toString())
        try {
            Runtimes.plan("/x/m.tflite", "m.tflite", compiled, "gpu", 4, null)
            fail("gpu accepted for a litert-npu artifact")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("compiled for one SoC's NPU (litert-npu)"))
        }
        val onNpu = Runtimes.plan("/x/m.tflite", "m.tflite", compiled, "npu", 4, null)
        assertEquals(listOf("npu"), onNpu.litertAccelerators)
        assertTrue(onNpu.npuLibraries)  // the environment is pointed at the packaged dispatch library
        assertFalse(Runtimes.plan("/x/m.tflite", "m.tflite", sidecar, "gpu", 4, null).npuLibraries)
        // LiteRT 2.1 aborts the process when a DISPATCH_OP cannot run: the core refuses first, in words
        val forSm8650 = Sidecar.parse(JSONObject(files["model.json"]!!).put("backend", "litert-npu")
            .put("precision", "fp16").put("backend_info", JSONObject().put("target",
                JSONObject().put("soc_manufacturer", "Qualcomm").put("soc_model", "SM8650"))).toString())
        assertEquals("SM8650", forSm8650.npuSocModel)
        val libs = listOf("libLiteRtDispatch_Qualcomm.so", "libQnnHtp.so", "libQnnHtpV75Skel.so")
        fun npuPlan(facts: NpuFacts) = Runtimes.plan("/x/m.tflite", "m.tflite", forSm8650, "npu", 4, null, facts)
        assertTrue(npuPlan(NpuFacts("SM8650", libs)).npuLibraries)
        assertTrue(npuPlan(NpuFacts(null, libs)).npuLibraries)  // before API 31 the SoC is unknown: LiteRT decides
        for ((facts, words) in listOf(NpuFacts("SM8750", libs) to "is compiled for SM8650, this phone is SM8750: " +
                "export with --soc SM8750", NpuFacts("SM8650", listOf("libQnnHtp.so")) to "no LiteRT NPU dispatch library")) {
            try {
                npuPlan(facts)
                fail("accepted: $words")
            } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!, e.message!!.contains(words))
            }
        }
        assertTrue(Runtimes.dispatchLibraryPackaged(libs))
        assertFalse(Runtimes.dispatchLibraryPackaged(listOf("libLiteRtDispatch_.so", "libQnnHtp.so")))
        val onnxFile = floatExport(".onnx")
        val onnxSide = Sidecar.parse(File(onnxFile.first, onnxFile.second.name.substringBeforeLast('.') + ".json").readText())
        try {
            Runtimes.plan("/x/m.onnx", "m.onnx", onnxSide, "qnn", 4, null)
            fail("qnn accepted")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("onnxruntime-android has no QNN execution provider"))
        }
    }

    @Test
    fun requestsAreParsedAndRefusedWithTheExtraNamed() {
        val ok = BenchmarkRequest.parse(mapOf("model" to "model.onnx", "threads" to "2", "iters" to "10"))
        assertEquals("cpu", ok.accelerator)
        assertEquals(2, ok.threads)
        assertEquals(5, ok.warmup)
        assertEquals(10, ok.iterations)
        assertEquals("result.json", ok.output)
        fun refused(extras: Map<String, String>, message: String) {
            try {
                BenchmarkRequest.parse(extras)
                fail("accepted $extras")
            } catch (e: Exception) {
                assertEquals(message, e.message)
            }
        }
        refused(mapOf("threads" to "2"), "the extra 'model' (--es model model.tflite) is missing")
        refused(mapOf("model" to "../x.tflite"), "the extra 'model' must be a file name inside the benchmark folder, not '../x.tflite'")
        refused(mapOf("model" to "m.tflite", "iters" to "0"), "the extra 'iters' must be an integer in [1, 100000], not '0'")
        refused(mapOf("model" to "m.tflite", "threads" to "four"), "the extra 'threads' must be an integer in [1, 64], not 'four'")
        refused(mapOf("model" to "m.tflite", "iter" to "3"), "unknown extra iter; the app reads model, accelerator, threads, warmup, iters, output")
        refused(mapOf("model" to "m.pte"), "m.pte is not an artifact the Android app runs (.onnx, .ort, .tflite); export tflite, onnx or ort")
        assertEquals("r1.json", BenchmarkRequest.outputOf(mapOf("output" to "r1.json")))
        assertEquals("result.json", BenchmarkRequest.outputOf(mapOf("output" to "/sdcard/evil.json")))
        assertEquals("result.json", BenchmarkRequest.outputOf(mapOf("output" to "notjson.txt")))

        val failed = Benchmark.run(mapOf("model" to "m.tflite", "iters" to "x"),
            context(emptyMap(), FixedLoader(ReplayEngine(emptyMap(), emptyMap(), "float32", "float32",
                EngineReport(null, null, null)), null)))
        assertEquals("failed: the extra 'iters' must be an integer in [1, 100000], not 'x'", failed.status)
        assertEquals("none", failed.runtime)
        val json = failed.toJson()
        assertTrue(json.getJSONObject("request").isNull("iterations"))
        assertEquals(0, json.getJSONArray("latencies_ms").length())
        failed.writeTo(File(folder("emo.out"), "app-bench-android-failed.json"))
    }

    @Test
    fun catalogListsWhatHasASidecarAndSaysWhyNot() {
        val listing = ModelCatalog.discover(listOf("b.onnx", "b.json", "a.tflite", "a.json", "a.examples.json",
            "orphan.ort", ".hidden.tflite", "notes.txt", "c.pte", "c.json"))
        assertEquals(listOf("a.tflite", "b.onnx"), listing.entries.map { it.artifact })
        assertEquals("a.examples.json", listing.entries[0].examples)
        assertNull(listing.entries[1].examples)
        assertEquals(listOf("orphan.ort: no sidecar orphan.json next to it; copy emo-export's whole output"), listing.skipped)
        try {
            ModelCatalog.find("orphan.ort", listOf("orphan.ort"))
            fail("found a model without a sidecar")
        } catch (e: ModelContractException) {
            assertTrue(e.message!!.startsWith("orphan.ort: no sidecar"))
        }
        assertTrue(ModelCatalog.isModelFile("x.examples.json"))
        assertFalse(ModelCatalog.isModelFile("README.txt"))
        // the sidecar's own name for the examples file is used when the fixed name is absent
        val (dir, artifact) = floatExport(".onnx")
        val stem = artifact.name.substringBeforeLast('.')
        val names = listOf(artifact.name, "$stem.json", "$stem.examples.json")
        val model = ModelCatalog.open(CatalogEntry(artifact.name, "$stem.json", null), names) { File(dir, it).readBytes() }
        assertEquals(3, model.examples!!.examples.size)
    }

    @Test
    fun deviceAndMemoryFacts() {
        assertEquals("Tensor G3", pixel.soc)
        assertEquals("Android 15 (API 35)", pixel.os)
        val old = DeviceInfo.android("SM-G960F", "samsung", null, "samsungexynos9810", "10", 29, listOf("arm64-v8a", "armeabi-v7a"))
        assertEquals("samsungexynos9810", old.soc)
        assertEquals("arm64-v8a", old.abi)
        assertEquals(89.0, DeviceInfo.peakMemoryMb("Name:\tx\nVmPeak:\t 1 kB\nVmHWM:\t   91136 kB\n")!!, 1e-9)
        assertNull(DeviceInfo.peakMemoryMb("Name:\tx\n"))
    }

    @Test
    fun outputOfTheWrongSizeIsAnError() {
        val (dir, artifact) = floatExport(".tflite")
        val sidecar = Sidecar.parse(File(dir, artifact.name.substringBeforeLast('.') + ".json").readText())
        val short = object : Engine {
            override val inputType = "float32"
            override val outputType = "float32"
            override fun runFloats(input: FloatArray) = FloatArray(10)
            override fun runBytes(input: ByteArray) = ByteArray(0)
            override fun report() = EngineReport(null, null, null)
            override fun close() {}
        }
        try {
            ModelSession(sidecar, short).run(FloatArray(sidecar.inputSize))
            fail("accepted 10 outputs")
        } catch (e: ModelContractException) {
            assertEquals("the model returned 10 values, its sidecar says 1 x 1000; re-export the artifact", e.message)
        }
    }

    @Test
    fun screenTexts() {
        val (dir, artifact) = floatExport(".onnx")
        val sidecar = Sidecar.parse(File(dir, artifact.name.substringBeforeLast('.') + ".json").readText())
        val logits = FloatArray(1000)
        logits[3] = 5f
        val text = Texts.predictions(Classify.predictions(logits, sidecar), 12.345, "cpu")
        assertTrue(text, text.startsWith(sidecar.labels[3]))
        assertTrue(text, text.endsWith("\n12.35 ms on cpu"))
        assertEquals("no examples file next to m.onnx: re-export it with emo-export", Texts.selfTest(null, "m.onnx", "cpu"))
    }

    @Test
    fun requestsOutsideTheBoundsStillGiveAResultThatFollowsTheSchema() {
        // a hand-made request: every value echoed in the result must stay within app-bench.schema.json's bounds
        val engine = ReplayEngine(emptyMap(), emptyMap(), "float32", "float32", EngineReport(null, null, null))
        val extras = mapOf("model" to "", "accelerator" to "x".repeat(100), "threads" to "999", "warmup" to "-1",
            "iters" to "0")
        val failed = Benchmark.run(extras, context(emptyMap(), FixedLoader(engine, null)))
        assertEquals("failed: the extra 'model' must be a file name inside the benchmark folder, not ''", failed.status)
        assertEquals("?", failed.artifact)
        assertEquals("x".repeat(64), failed.request["accelerator"])
        assertEquals("x".repeat(64), failed.accelerator.requested)
        assertNull(failed.request["threads"])
        assertNull(failed.request["warmup"])
        assertNull(failed.request["iterations"])
        failed.writeTo(File(folder("emo.out"), "app-bench-android-failed-bounds.json"))
        // values parse would take are kept; a name longer than a file name can be is refused and cut
        assertEquals(mapOf("accelerator" to "gpu", "threads" to 2, "warmup" to 0, "iterations" to 7),
            BenchmarkRequest.partial(mapOf("accelerator" to "gpu", "threads" to "2", "warmup" to "0", "iters" to " 7")))
        val long = "m".repeat(300) + ".tflite"
        assertEquals(255, BenchmarkRequest.artifactOf(mapOf("model" to long)).length)
        val refused = Benchmark.run(mapOf("model" to long), context(emptyMap(), FixedLoader(engine, null)))
        assertTrue(refused.status, refused.status.startsWith("failed: the extra 'model' must be a file name of at most 255"))
        assertEquals("\ud83d\ude00".repeat(2), BenchmarkRequest.bounded("\ud83d\ude00".repeat(3), 2))  // code points, not halves
        assertEquals(BenchmarkRequest.DEFAULT_THREADS, BenchmarkRequest.parse(mapOf("model" to "m.onnx")).threads)
        assertEquals(BenchmarkRequest.DEFAULT_ACCELERATOR, BenchmarkRequest.parse(mapOf("model" to "m.onnx")).accelerator)
    }

    @Test
    fun anExamplesFileOfAnotherArtifactIsRefused() {
        // emo-bench pushes fixed names; an examples file left by another artifact must not judge this one
        val (dir, artifact) = floatExport(".tflite")
        val files = LinkedHashMap(benchFolder(dir, artifact))
        val examples = JSONObject(files["model.examples.json"]!!)
        val own = examples.getString("artifact")
        assertEquals(Sidecar.parse(files["model.json"]!!).file, own)  // the exporter writes the sidecar's file
        files["model.examples.json"] = examples.put("artifact", "emo_2m_tflite_fp32.tflite").toString()
        val engine = replayOfExamples(Sidecar.parse(files["model.json"]!!), ExampleSet.parse(files["model.examples.json"]!!),
            EngineReport(null, 4, null))
        val result = Benchmark.run(mapOf("model" to "model.tflite"), context(files, FixedLoader(engine, null)))
        assertEquals("failed: model.examples.json holds the examples of \"emo_2m_tflite_fp32.tflite\" but model.json " +
            "describes \"$own\"; copy the artifact's own examples file (emo-export writes it beside the artifact)",
            result.status)
        assertEquals(0, engine.runs)
        files["model.examples.json"] = examples.put("artifact", own).toString()
        assertEquals("ok", Benchmark.run(mapOf("model" to "model.tflite", "iters" to "1"),
            context(files, FixedLoader(engine, null))).status)
    }

    @Test
    fun theScanListsEveryCopyOfAnArtifactWithItsFolder() {
        val (dir, artifact) = floatExport(".onnx")
        val stem = artifact.name.substringBeforeLast('.')
        val own = listOf(artifact.name, "$stem.json", "$stem.examples.json")
        val folders = listOf(CatalogFolder("app", own), CatalogFolder("external", own + listOf("other.onnx", "other.json")),
            CatalogFolder("empty", emptyList()))
        val scan = ModelCatalog.scan(folders) { folder, name ->
            if (name == "other.json") "{".toByteArray() else File(dir, name).readBytes()
        }
        assertEquals(listOf("${artifact.name} (app)", "${artifact.name} (external)"), scan.titles)
        assertEquals("external", scan.byTitle("${artifact.name} (external)")!!.entry.folder)
        assertEquals(1, scan.skipped.size)
        assertTrue(scan.skipped[0], scan.skipped[0].startsWith("other.onnx: sidecar other.json"))
        assertEquals(scan.skipped[0], scan.summary("copy some"))
        val single = ModelCatalog.scan(listOf(CatalogFolder("app", own))) { _, name -> File(dir, name).readBytes() }
        assertEquals(listOf(artifact.name), single.titles)
        assertEquals("", single.summary("copy some"))
        assertEquals("no models: copy some", ModelCatalog.scan(emptyList()) { _, _ -> ByteArray(0) }.summary("copy some"))
    }

    @Test
    fun theScreenOpensAModelThroughTheBenchmarksProbe() {
        val (dir, artifact) = floatExport(".tflite")
        val files = benchFolder(dir, artifact)
        val model = ModelCatalog.open(ModelCatalog.find("model.tflite", files.keys), files.keys) {
            files.getValue(it).toByteArray()
        }
        val engine = replayOfExamples(model.sidecar, model.examples!!, EngineReport(null, 4, null))
        val opened = Benchmark.openAndProbe(model, "/data/m/model.tflite", "gpu", BenchmarkRequest.DEFAULT_THREADS,
            FixedLoader(engine, listOf("cpu", "gpu")), StepClock(1_000_000))
        assertEquals("the self-test's examples are the probe", 3, engine.runs)
        assertEquals("gpu (as configured)", opened.ran)
        assertEquals("model.tflite on gpu (as configured); self-test passed", Texts.opened("model.tflite", opened))
        assertFalse(engine.closed)
        // a runtime that compiles the model but cannot run it: the error goes up and the session is closed
        val broken = ReplayEngine(emptyMap(), emptyMap(), "float32", "float32", EngineReport(null, 4, null))
        try {
            Benchmark.openAndProbe(model, "/data/m/model.tflite", "cpu", 4, FixedLoader(broken, null), StepClock(1))
            fail("a session that cannot run was opened")
        } catch (e: IllegalStateException) {
            assertTrue(broken.closed)
        }
        // without examples the probe is one neutral (mid-grey) input
        val bare = CatalogModel(model.entry, model.sidecar, null)
        val neutral = Benchmark.neutralInput(model.sidecar)
        assertTrue(neutral.all { it == 0.5f })
        val once = ReplayEngine(mapOf(neutral.toList() to FloatArray(model.sidecar.numClasses)), emptyMap(), "float32",
            "float32", EngineReport(null, 4, null))
        val probed = Benchmark.openAndProbe(bare, "/data/m/model.tflite", "cpu", 4, FixedLoader(once, null), StepClock(1))
        assertNull(probed.probe.parity)
        assertEquals("model.tflite on cpu (as configured)", Texts.opened("model.tflite", probed))
    }

    @Test
    fun textsAndNamesAreTheSameOnEveryKotlinVersion() {
        assertEquals("m.onnx", Check.lower("M.ONNX"))
        assertEquals("k", Check.lower("\u212a"))  // the Kelvin sign lower-cases to an ASCII k, in Python too
        assertEquals("i\u0307", Check.lower("\u0130"))
        assertEquals("\ud801\udc28", Check.lower("\ud801\udc00"))  // a supplementary letter, by code point
        assertEquals("coreml", AcceleratorReport.acceleratorOf("CoreMLExecutionProvider"))
        assertEquals(65, Check.code('A'))
        assertEquals("photo: out of memory (the image is too large for the memory this phone gives the app)",
            Texts.failure("photo", OutOfMemoryError("Failed to allocate a 201326608 byte allocation")))
        assertEquals("photo: boom", Texts.failure("photo", IllegalStateException("boom\nat line 2")))
    }
}
