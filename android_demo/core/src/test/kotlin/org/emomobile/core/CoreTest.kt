package org.emomobile.core

import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.util.Random

/**
 * The core against real exported artifacts: `tests/test_android_core.py` exports them with `emo-export`, writes the
 * bundled photos' decoded pixels as binary PPM (what `emo.data.load_image` decodes, EXIF applied), and passes the
 * folders as system properties `emo.artifacts` and `emo.pixels` (and `emo.out` for files the Python side reads back).
 */
class CoreTest {
    private val artifacts = File(System.getProperty("emo.artifacts") ?: error("-Demo.artifacts=DIR is required"))
    private val pixels = File(System.getProperty("emo.pixels") ?: error("-Demo.pixels=DIR is required"))

    /** Every sidecar one folder down (`emo.artifacts/{one export}/{stem}.json`). */
    private fun sidecars(): List<File> {
        val found = artifacts.listFiles()!!.filter { it.isDirectory }.flatMap { dir ->
            dir.listFiles { f -> f.name.endsWith(".json") && !f.name.endsWith(".examples.json") }!!.toList()
        }.sortedBy { it.path }
        assertTrue("no sidecars in $artifacts", found.isNotEmpty())
        return found
    }

    private val sidecarFiles = HashMap<Sidecar, File>()

    private fun load(file: File): Sidecar {
        val sidecar = Sidecar.parse(file.readText(), file.name)
        sidecarFiles[sidecar] = file
        return sidecar
    }

    private fun examplesOf(sidecar: Sidecar): ExampleSet {
        val name = sidecar.examplesFile ?: error("${sidecar.file} names no examples file")
        val file = sidecarFiles[sidecar] ?: error("unknown sidecar")
        return ExampleSet.parse(File(file.parentFile, name).readText(), name)
    }

    @Test
    fun preprocessingEqualsPythonBitForBit() {
        var checked = 0
        for (file in sidecars()) {
            val sidecar = load(file)
            val preprocessor = Preprocessor(sidecar)
            for (example in examplesOf(sidecar).examples) {
                val image = Ppm.read(File(pixels, example.source.replace(".jpg", ".ppm")))
                val tensor = preprocessor.tensor(image.rgba, image.width, image.height)
                assertEquals(example.input.size, tensor.size)
                var worst = 0.0
                var worstAt = -1
                for (i in tensor.indices) {
                    val d = Math.abs(tensor[i].toDouble() - example.input[i])
                    if (d > worst) { worst = d; worstAt = i }
                }
                // exact: Pillow's bicubic is reproduced bit for bit, and the float32 operations are the same
                assertEquals("${file.name} ${example.source}: max |diff| $worst at element $worstAt", 0.0, worst, 0.0)
                checked++
            }
        }
        assertTrue(checked >= 3)
    }

    @Test
    fun topFiveFromExpectedOutputsMatchesTheFile() {
        for (file in sidecars()) {
            val sidecar = load(file)
            val set = examplesOf(sidecar)
            for (example in set.examples) {
                val predictions = Classify.predictions(example.output, sidecar)
                assertArrayEquals(example.top5, predictions.map { it.index }.toIntArray())
                assertEquals(example.top5Labels, predictions.map { it.label })
                val probabilities = Classify.softmax(example.output)
                assertEquals(1.0, probabilities.map { it.toDouble() }.sum(), 1e-5)
            }
        }
    }

    @Test
    fun agreementPassesOnExpectedAndFailsWhenOneLogitMoves() {
        for (file in sidecars()) {
            val set = examplesOf(load(file))
            val same = set.agreement(set.examples.map { it.output.copyOf() })
            assertTrue(same.status, same.passed)
            assertEquals(0.0, same.maxAbsDiff, 0.0)
            val moved = set.examples.map { it.output.copyOf() }
            val top = Classify.topK(moved[0], 1)[0]
            moved[0][top] = moved[0][top] - 100f  // the best class is no longer the best
            val result = set.agreement(moved)
            assertFalse(result.status, result.passed)
            assertTrue(result.status, result.status.startsWith("failed: "))
            assertTrue(result.top1Agreement < 1.0)
        }
    }

    @Test
    fun sidecarContractIsReadNotCopied() {
        for (file in sidecars()) {
            val sidecar = load(file)
            val raw = JSONObject(file.readText())
            val shape = raw.getJSONObject("input").getJSONArray("shape")
            assertEquals(sidecar.inputSize, shape.getInt(1) * shape.getInt(2) * shape.getInt(3))
            assertEquals(1000, sidecar.labels.size)
            assertEquals(raw.getJSONObject("input").getString("layout"), sidecar.layout)
        }
    }

    @Test
    fun base64MatchesTheJdk() {
        val random = Random(7)
        for (n in 0 until 40) {
            val bytes = ByteArray(n).also { random.nextBytes(it) }
            val text = java.util.Base64.getEncoder().encodeToString(bytes)
            assertArrayEquals(bytes, Base64.decode(text))
            assertArrayEquals(bytes, Base64.decode(text.trimEnd('=')))
        }
        try {
            Base64.decode("ab!d")
            fail("accepted a non-base64 character")
        } catch (e: ModelContractException) {
        }
    }

    @Test
    fun resampleIsIdentityAtTheSameSizeAndResizesAnyAspect() {
        val random = Random(3)
        val rgb = ByteArray(17 * 9 * 3) { random.nextInt(256).toByte() }
        assertArrayEquals(rgb, Resample.bicubic(rgb, 17, 9, 17, 9))
        assertEquals(5 * 30 * 3, Resample.bicubic(rgb, 17, 9, 5, 30).size)
        val flat = ByteArray(8 * 8 * 3) { 77 }
        assertTrue(Resample.bicubic(flat, 8, 8, 3, 5).all { it == 77.toByte() })  // weights sum to one after rounding
    }

    @Test
    fun paddedRgbaRowsResizeAsPackedRgb() {
        // what Bitmap.copyPixelsToBuffer gives (RGBA, rows maybe padded) resizes exactly as the packed RGB pixels
        val random = Random(4)
        val w = 23
        val h = 11
        val rgb = ByteArray(w * h * 3) { random.nextInt(256).toByte() }
        val row = w * 4 + 8
        val rgba = ByteArray(row * h) { random.nextInt(256).toByte() }  // padding and alpha: noise the core must skip
        for (y in 0 until h) for (x in 0 until w) for (c in 0 until 3) rgba[y * row + x * 4 + c] = rgb[(y * w + x) * 3 + c]
        for (size in listOf(intArrayOf(w, h), intArrayOf(9, 30), intArrayOf(w, 5), intArrayOf(40, h))) {
            assertArrayEquals(Resample.bicubic(rgb, w, h, size[0], size[1]),
                Resample.bicubic(rgba, w, h, size[0], size[1], 4, row))
        }
    }

    @Test
    fun largePhotosAreDecodedWithinTheBound() {
        // a 12-megapixel photo is decoded whole (the bit-exact path); a 50-megapixel one is scaled to fit the bound
        assertArrayEquals(intArrayOf(4000, 3000), Preprocessor.decodeSize(4000, 3000))
        assertArrayEquals(intArrayOf(4096, 4096), Preprocessor.decodeSize(4096, 4096))
        for (size in listOf(intArrayOf(8160, 6144), intArrayOf(4097, 4096), intArrayOf(3000, 100000), intArrayOf(1, 1 shl 30))) {
            val d = Preprocessor.decodeSize(size[0], size[1])
            assertTrue("${d[0]}x${d[1]}", d[0] >= 1 && d[1] >= 1 && d[0].toLong() * d[1] <= Preprocessor.MAX_DECODE_PIXELS)
            assertTrue("${d[0]}x${d[1]}", d[0].toLong() * d[1] > Preprocessor.MAX_DECODE_PIXELS * 0.99)
            if (size[0] > 1) {  // scaled uniformly: the aspect ratio is kept
                val aspect = size[0].toDouble() / size[1]
                assertEquals(aspect, d[0].toDouble() / d[1], aspect * 0.01)
            }
        }
        assertArrayEquals(intArrayOf(4720, 3554), Preprocessor.decodeSize(8160, 6144))
    }

    @Test
    fun topKBreaksTiesByIndex() {
        assertArrayEquals(intArrayOf(1, 3, 0), Classify.topK(floatArrayOf(0f, 2f, -1f, 2f), 3))
    }
}

/** A binary PPM (P6, maxval 255): the test's carrier for decoded pixels (no JPEG decoder differences), as the RGBA
 * bytes the app hands the core. */
class PpmImage(val width: Int, val height: Int, val rgba: ByteArray)

object Ppm {
    /** PPM's white space (ASCII), byte by byte: Byte.toChar() is deprecated from Kotlin 1.5, Char(Int) new in it. */
    private fun isSpace(b: Byte): Boolean = b == 0x20.toByte() || (b >= 0x09 && b <= 0x0d)

    fun read(file: File): PpmImage {
        val bytes = file.readBytes()
        var pos = 0
        fun token(): String {
            while (isSpace(bytes[pos])) pos++
            val start = pos
            while (!isSpace(bytes[pos])) pos++
            return String(bytes, start, pos - start, Charsets.US_ASCII)
        }
        assertEquals("P6", token())
        val w = token().toInt()
        val h = token().toInt()
        assertEquals("255", token())
        pos++  // the single whitespace after maxval
        val rgba = ByteArray(w * h * 4) { if (it % 4 == 3) -1 else bytes[pos + it / 4 * 3 + it % 4] }
        return PpmImage(w, h, rgba)
    }
}
