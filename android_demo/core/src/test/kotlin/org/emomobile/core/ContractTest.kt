package org.emomobile.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/**
 * The Kotlin readers against the artifact contract's own files (`emo/contract`, passed as `-Demo.contract=DIR` by
 * tests/test_android_core.py): every conformance case of `conformance/{sidecar,examples}/cases.json` (a valid file
 * parses to the values Python reads; a bad one fails with exactly the case's field and reason), the vocabulary
 * against `vocabulary.json`, and the parity policy and limits against Python's. `-Demo.conformance=DIR` holds what
 * tests/conformance_data.py wrote: Python's readings of the valid cases, its policy, and mutants of the valid cases
 * with Python's verdict on each. A case added to a cases.json is checked here with no change to this file.
 */
class ContractTest {
    private val contract = File(System.getProperty("emo.contract") ?: error("-Demo.contract=DIR is required"))
    /** What tests/conformance_data.py wrote: readings.json, policy.json, fuzz/. */
    private val data = File(System.getProperty("emo.conformance") ?: error("-Demo.conformance=DIR is required"))
    private fun json(name: String) = JSONObject(File(data, name).readText())

    /** Checks every case of one kind in [root] (a conformance folder) against the reader, and each valid one's
     * values against Python's [readings]; fails with every disagreement. */
    private fun conformance(root: File, readings: JSONObject, kind: String, read: (ByteArray, String) -> Any,
                            same: (Any, JSONObject) -> Unit) {
        val folder = File(root, kind)
        val cases = JSONObject(File(folder, "cases.json").readText()).getJSONArray("cases")
        val wanted = readings.getJSONObject(kind)
        val problems = ArrayList<String>()
        for (i in 0 until cases.length()) {
            val case = cases.getJSONObject(i)
            val name = case.getString("file")
            val bytes = File(folder, name).readBytes()
            try {
                val parsed = read(bytes, name)
                if (!case.getBoolean("valid")) {
                    problems.add("$name: accepted, expected ${case.getString("field")} / ${case.getString("reason")}")
                    continue
                }
                try {
                    same(parsed, wanted.getJSONObject(name))
                } catch (e: AssertionError) {
                    problems.add("$name: read differently from Python: ${e.message}")
                }
            } catch (e: ContractException) {
                val message = e.message ?: ""
                val got = "'${e.field}' / ${e.reason}"
                if (case.getBoolean("valid")) {
                    problems.add("$name: refused ($got: $message), expected valid")
                } else if (e.field != case.getString("field") || e.reason != case.getString("reason")) {
                    problems.add("$name: $got, expected '${case.getString("field")}' / ${case.getString("reason")}: $message")
                } else if (message.contains('\n') || (e.field.isNotEmpty() && !message.contains("'${e.field}'"))) {
                    problems.add("$name: the message is not one line naming the field: $message")
                }
            } catch (e: Throwable) {
                problems.add("$name: ${e.javaClass.simpleName} instead of a ContractException: ${e.message}")
            }
        }
        assertTrue("${problems.size} of ${cases.length()} $kind cases in $root disagree:\n" +
            problems.joinToString("\n"), problems.isEmpty())
        println("conformance: $kind ${cases.length()} cases of ${root.path} agree")
    }

    private fun readSidecar(bytes: ByteArray, name: String): Any = Sidecar.parse(bytes, name)
    private fun readExamples(bytes: ByteArray, name: String): Any = ExampleSet.parse(bytes, name)

    /** [[name, number], ...] in order. */
    private fun pairs(array: JSONArray): List<Pair<String, Double>> =
        (0 until array.length()).map { Pair(array.getJSONArray(it).getString(0), array.getJSONArray(it).getDouble(1)) }

    private fun floats(array: JSONArray) = FloatArray(array.length()) { array.getDouble(it).toFloat() }

    @Test
    fun sidecarConformance() = conformance(File(contract, "conformance"), json("readings.json"), "sidecar",
        ::readSidecar, ::sameSidecar)

    @Test
    fun examplesConformance() = conformance(File(contract, "conformance"), json("readings.json"), "examples",
        ::readExamples, ::sameExamples)

    /** Mutants of the valid cases (tests/conformance_data.py: one to three defects each) judged by Python. */
    @Test
    fun mutantsAgreeWithPython() {
        val fuzz = File(data, "fuzz")
        val readings = JSONObject(File(fuzz, "readings.json").readText())
        conformance(File(fuzz, "conformance"), readings, "sidecar", ::readSidecar, ::sameSidecar)
        conformance(File(fuzz, "conformance"), readings, "examples", ::readExamples, ::sameExamples)
    }

    private fun sameSidecar(parsed: Any, want: JSONObject) {
        val s = parsed as Sidecar
        assertEquals(want.getString("variant"), s.variant)
        assertEquals(want.getString("backend"), s.backend)
        assertEquals(want.getString("precision"), s.precision)
        assertEquals(want.getString("file"), s.file)
        assertEquals(want.getString("sha256"), s.sha256)
        assertEquals(if (want.isNull("size_bytes")) null else want.getLong("size_bytes"), s.sizeBytes)
        assertEquals(want.getString("input_name"), s.inputName)
        assertEquals(want.getString("layout"), s.layout)
        assertEquals(want.getInt("batch"), s.batch)
        assertEquals(want.getInt("height"), s.height)
        assertEquals(want.getInt("width"), s.width)
        assertArrayEquals(floats(want.getJSONArray("mean")), s.normalization.mean, 0f)
        assertArrayEquals(floats(want.getJSONArray("std")), s.normalization.std, 0f)
        assertEquals(want.getBoolean("in_graph"), s.normalization.inGraph)
        assertEquals(want.getDouble("crop_pct"), s.preprocessing.cropPct, 0.0)
        assertEquals(want.getString("interpolation"), s.preprocessing.interpolation)
        assertEquals(want.getString("output_name"), s.outputName)
        assertEquals(want.getString("output_kind"), s.outputKind)
        assertEquals(want.getInt("num_classes"), s.numClasses)
        val labels = want.getJSONArray("labels")
        assertEquals((0 until labels.length()).map { labels.getString(it) }, s.labels)
        assertEquals(if (want.isNull("examples")) null else want.getString("examples"), s.examplesFile)
        for (end in listOf("input", "output")) {
            val spec = if (end == "input") s.inputSpec else s.outputSpec
            val io = want.optJSONObject("io")?.optJSONObject(end)
            assertEquals(io?.getString("dtype") ?: "float32", spec.dtype)
            if (io != null && spec.quantized) {
                assertEquals(io.getDouble("scale").toFloat(), spec.scale, 0f)
                assertEquals(io.getInt("zero_point"), spec.zeroPoint)
            }
        }
        val labelOf = want.getJSONArray("label_of")  // classes 0, N - 1, N and -1: names or "class N"
        listOf(0, s.numClasses - 1, s.numClasses, -1).forEachIndexed { k, index ->
            assertEquals(labelOf.getString(k), s.label(index))
        }
    }

    private fun sameExamples(parsed: Any, want: JSONObject) {
        val set = parsed as ExampleSet
        assertEquals(want.getString("artifact"), set.artifact)
        assertEquals(want.getString("precision"), set.precision)
        assertEquals(pairs(want.getJSONArray("tolerance")), set.tolerance.entries.map { Pair(it.key, it.value) })
        val examples = want.getJSONArray("examples")
        assertEquals(examples.length(), set.examples.size)
        for ((i, e) in set.examples.withIndex()) {
            val w = examples.getJSONObject(i)
            assertEquals(w.getString("source"), e.source)
            val shape = w.getJSONArray("input_shape")
            assertArrayEquals(IntArray(shape.length()) { shape.getInt(it) }, e.inputShape)
            val top5 = w.getJSONArray("top5")
            assertArrayEquals(IntArray(top5.length()) { top5.getInt(it) }, e.top5)
            for ((key, values) in listOf("input" to e.input, "output" to e.output)) {
                assertEquals(w.getInt("${key}_size"), values.size)
                var sum = 0.0
                for (v in values) sum += v.toDouble()  // in index order, as numpy's cumsum
                assertEquals("$key sum", w.getString("${key}_sum").toDouble(), sum, 0.0)
                assertEquals(w.getString("${key}_last").toFloat(), values[values.size - 1], 0f)
            }
        }
    }

    @Test
    fun vocabularyIsTheContracts() {
        val vocabulary = JSONObject(File(contract, "vocabulary.json").readText())
        fun strings(key: String): List<String> {
            val array = vocabulary.getJSONArray(key)
            return (0 until array.length()).map { array.getString(it) }
        }
        val tables = mapOf("precisions" to Vocabulary.PRECISIONS, "quantized" to Vocabulary.QUANTIZED,
            "layouts" to Vocabulary.LAYOUTS, "output_kinds" to Vocabulary.OUTPUT_KINDS, "variants" to Vocabulary.VARIANTS,
            "interpolations" to Vocabulary.INTERPOLATIONS, "bench_targets" to Vocabulary.BENCH_TARGETS)
        for ((key, ours) in tables) assertEquals(key, strings(key), ours)
        assertEquals(vocabulary.getString("sidecar_suffix"), Vocabulary.SIDECAR_SUFFIX)
        assertEquals(vocabulary.getString("examples_suffix"), Vocabulary.EXAMPLES_SUFFIX)
        val known = tables.keys + setOf("formats", "sidecar_suffix", "examples_suffix")
        assertEquals("vocabulary.json has entries this core does not know", known,
            vocabulary.keys().asSequence().toSet())
        val formats = vocabulary.getJSONArray("formats")
        assertEquals(formats.length(), Vocabulary.FORMATS.size)
        for ((i, ours) in Vocabulary.FORMATS.withIndex()) {
            val f = formats.getJSONObject(i)
            assertEquals(setOf("name", "tag", "suffix", "precisions", "runtime", "browser", "android", "ios"),
                f.keys().asSequence().toSet())
            val precisions = f.getJSONArray("precisions")
            assertEquals(f.getString("name"), ours.name)
            assertEquals(f.getString("tag"), ours.tag)
            assertEquals(f.getString("suffix"), ours.suffix)
            assertEquals((0 until precisions.length()).map { precisions.getString(it) }, ours.precisions)
            assertEquals(f.getString("runtime"), ours.runtime)
            assertEquals(f.getBoolean("browser"), ours.browser)
            assertEquals(f.getBoolean("android"), ours.android)
            assertEquals(f.getBoolean("ios"), ours.ios)
        }
        // what the app runs follows the table: its suffixes and runtimes are the formats marked "android"
        val android = Vocabulary.FORMATS.filter { it.android }
        assertEquals(android.map { it.suffix }.distinct(), Runtimes.SUFFIXES)
        for (f in android) assertEquals(f.runtime, Runtimes.forFile("m${f.suffix}"))
        assertTrue(setOf(Runtimes.LITERT, Runtimes.ONNXRUNTIME) == android.map { it.runtime }.toSet())
    }

    @Test
    fun parityPolicyAndLimitsArePythons() {
        val policy = json("policy.json")
        val tolerances = policy.getJSONArray("tolerances")
        assertEquals(tolerances.length(), ExampleSet.TOLERANCES.size)
        for ((i, entry) in ExampleSet.TOLERANCES.entries.withIndex()) {
            val theirs = tolerances.getJSONArray(i)
            assertEquals(theirs.getString(0), entry.key)
            assertEquals(entry.key, pairs(theirs.getJSONArray(1)), entry.value.entries.map { Pair(it.key, it.value) })
        }
        val upper = policy.getJSONArray("upper_bounds")
        assertEquals((0 until upper.length()).map { upper.getString(it) }, ExampleSet.UPPER_BOUNDS)
        val names = policy.getJSONArray("tolerance_names")
        assertEquals((0 until names.length()).map { names.getString(it) }.sorted(), ExampleSet.TOLERANCE_NAMES.sorted())
        val dtypes = policy.getJSONArray("quantized_dtypes")
        assertEquals((0 until dtypes.length()).map { dtypes.getString(it) }, TensorSpec.DTYPES)
        assertEquals(policy.getString("sidecar_schema"), Sidecar.SCHEMA)
        assertEquals(policy.getString("examples_schema"), ExampleSet.SCHEMA)
        assertEquals(policy.getLong("max_sidecar_bytes"), Sidecar.MAX_BYTES.toLong())
        assertEquals(policy.getLong("max_examples_bytes"), ExampleSet.MAX_BYTES.toLong())
        assertEquals(policy.getLong("max_input_elements"), Sidecar.MAX_INPUT_ELEMENTS)
        assertEquals(policy.getLong("max_tensor_elements"), ExampleSet.MAX_TENSOR_ELEMENTS)
        assertEquals(policy.getDouble("crop_pct"), Preprocessing.CROP_PCT, 0.0)
        assertEquals(policy.getInt("max_depth"), BoundedJson.MAX_DEPTH)
        val reasons = policy.getJSONArray("reasons")
        assertEquals((0 until reasons.length()).map { reasons.getString(it) }, ContractException.REASONS)
    }

    private fun refused(text: String): ContractException? = try {
        BoundedJson.parse(text, "x")
        null
    } catch (e: ContractException) {
        e
    }

    /** As tests/test_contract.py's test_bounded_json, and what Android's org.json would let through. */
    @Test
    fun boundedJsonIsStrictAndNeverOverflowsTheStack() {
        val deep = "[".repeat(1_000_000) + "]".repeat(1_000_000)
        assertEquals("depth", refused(deep)!!.reason)
        assertEquals("depth", refused("{\"a\": ".repeat(40) + "1" + "}".repeat(40))!!.reason)
        assertNull(refused("[".repeat(32) + "]".repeat(32)))  // 32 levels are allowed, 33 are not
        assertEquals("depth", refused("[".repeat(33) + "]".repeat(33))!!.reason)
        assertEquals("json", refused("[".repeat(40) + "]".repeat(39))!!.reason)  // not JSON: that first
        @Suppress("UNCHECKED_CAST")
        val big = BoundedJson.parse("{\"n\": " + "9".repeat(40) + "}", "x") as Map<String, Any?>
        assertEquals("9".repeat(40).toDouble(), big["n"] as Double, 0.0)
        for (text in listOf("{\"n\": " + "9".repeat(5000) + "}", "{\"n\": NaN}", "{\"n\": -Infinity}", "{\"n\": 1e400}",
            "{\"a\": 1 // comment\n}", "{'a': 1}", "{\"a\": hello}", "{\"a\": 0x10}", "{\"a\": 010}", "[1, 2,]",
            "{\"a\": 1,}", "{\"a\" = 1}", "{\"a\": 1; \"b\": 2}", "\ufeff{}", "{\"a\": \"tab\there\"}", "{\"a\": True}",
            "{\"a\": \"\\x41\"}", "{\"a\": 1.}", "{\"a\": .5}", "{\"a\": +1}", "{\"a\": -}", "{} {}", "", " ", "\"")) {
            assertEquals(text.take(40), "json", refused(text)?.reason)
        }
        // larger than its readers accept: refused before it is parsed
        assertEquals("size", try {
            Sidecar.parse(ByteArray(Sidecar.MAX_BYTES + 1) { 0x20 }, "huge.json")
            null
        } catch (e: ContractException) {
            e.reason
        })
        val bytes = "{\"n\": \"\u00e9\"}".toByteArray(Charsets.UTF_8)
        assertEquals("json", try {
            BoundedJson.parse(bytes.copyOf(bytes.size - 3) + byteArrayOf(0xff.toByte(), 0x22, 0x7d)  /* \xff " } */, "x")
            null
        } catch (e: ContractException) {
            e.reason
        })
        @Suppress("UNCHECKED_CAST")
        val doc = BoundedJson.parse(" {\"b\": 1, \"a\": [true, null, \"\\u00e9\\ud83d\\ude00\\n\"], \"b\": 2.5e0}\r\n", "x")
            as Map<String, Any?>
        assertEquals(listOf("b", "a"), doc.keys.toList())  // a repeated key keeps its place and its last value
        assertEquals(2.5, doc["b"] as Double, 0.0)
        assertEquals(listOf(true, null, "\u00e9\ud83d\ude00\n"), doc["a"])
        assertEquals(listOf("\ud800x"), BoundedJson.parse("[\"\\ud800x\"]", "x"))  // a lone surrogate, as Python keeps it
    }

    @Test
    fun theReaderUsesTheSidecarsCropFractionAndClassFallback() {
        val good = JSONObject(File(contract, "conformance/sidecar/good/fixture_onnx_fp32.json").readText())
        good.getJSONObject("input").getJSONObject("preprocessing").put("crop_pct", 1.0)
        val whole = Sidecar.parse(good.toString(), "crop1.json")
        assertEquals(1.0, whole.preprocessing.cropPct, 0.0)
        good.getJSONObject("input").remove("preprocessing")
        val older = Sidecar.parse(good.toString(), "older.json")
        assertEquals(0.875, older.preprocessing.cropPct, 0.0)
        // a 112 x 112 photo: crop 1.0 keeps it as it is; 0.875 resizes it to 128 first, then crops the centre
        val random = java.util.Random(5)
        val rgba = ByteArray(112 * 112 * 4) { random.nextInt(256).toByte() }
        val rgb = ByteArray(112 * 112 * 3) { rgba[it / 3 * 4 + it % 3] }
        assertArrayEquals(rgb, Preprocessor(whole).crop(rgba, 112, 112))
        assertArrayEquals(intArrayOf(128, 256), Preprocessor.resizedSize(112, 224, 112, 112, 0.875))
        assertArrayEquals(intArrayOf(112, 224), Preprocessor.resizedSize(112, 224, 112, 112, 1.0))
        assertTrue(!rgb.contentEquals(Preprocessor(older).crop(rgba, 112, 112)))
        good.remove("labels")
        val unlabelled = Sidecar.parse(good.toString(), "nolabels.json")
        assertEquals("class 7", unlabelled.label(7))
        assertEquals("class 10", older.label(10))
        assertEquals("0_t-shirt_top", older.label(0))
    }

    @Test
    fun examplesOfAnotherModelOrSizeAreRefusedWhenOpened() {
        val folder = File(contract, "conformance")
        val side = File(folder, "sidecar/good/fixture_onnx_fp32.json").readBytes()
        val examples = File(folder, "examples/good/fp32_u8_inputs.json").readBytes()
        val names = listOf("m.onnx", "m.json", "m.examples.json")
        val files = mapOf("m.json" to side, "m.examples.json" to examples)
        try {
            ModelCatalog.open(CatalogEntry("m.onnx", "m.json", "m.examples.json"), names) { files[it]!! }
            fail("examples of another input size accepted")
        } catch (e: ModelContractException) {
            assertTrue(e.message!!, e.message!!.startsWith("m.examples.json holds inputs of "))
        }
        assertNotNull(ExampleSet.parse(examples, "m.examples.json"))
    }
}
