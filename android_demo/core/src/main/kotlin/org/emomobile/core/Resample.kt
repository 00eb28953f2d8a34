package org.emomobile.core

/**
 * Pillow's bicubic resize of 8-bit RGB, bit for bit (`libImaging/Resample.c`: `precompute_coeffs`,
 * `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc` / `Vertical_8bpc`).
 *
 * `emo.preprocess` resizes with `PIL.Image.resize(size, BICUBIC)`: a separable cubic convolution (a = -0.5) whose
 * support is widened by the downscale factor (so it antialiases), with weights rounded to 22-bit fixed point, a
 * horizontal pass rounded and clipped to 8 bits, then a vertical pass. Matching it exactly (not just within 1/255)
 * means the app feeds the artifact the very tensor that PyTorch was checked on.
 */
object Resample {
    private const val PRECISION_BITS = 32 - 8 - 2
    private const val A = -0.5
    private const val SUPPORT = 2.0

    private fun bicubic(xIn: Double): Double {
        val x = if (xIn < 0.0) -xIn else xIn
        if (x < 1.0) return ((A + 2.0) * x - (A + 3.0)) * x * x + 1
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * A
        return 0.0
    }

    /** Fixed-point weights: for each output pixel its first input pixel, its tap count, and [ksize] weights. */
    private class Coefficients(val ksize: Int, val bounds: IntArray, val weights: IntArray)

    private fun coefficients(inSize: Int, outSize: Int): Coefficients {
        val scale = inSize.toFloat().toDouble() / outSize
        val filterScale = if (scale < 1.0) 1.0 else scale
        val support = SUPPORT * filterScale
        val ksize = Math.ceil(support).toInt() * 2 + 1
        val bounds = IntArray(outSize * 2)
        val weights = IntArray(outSize * ksize)
        val k = DoubleArray(ksize)
        for (xx in 0 until outSize) {
            val center = (xx + 0.5) * scale
            val ss = 1.0 / filterScale
            var xmin = (center - support + 0.5).toInt()
            if (xmin < 0) xmin = 0
            var xmax = (center + support + 0.5).toInt()
            if (xmax > inSize) xmax = inSize
            xmax -= xmin
            var ww = 0.0
            for (x in 0 until xmax) {
                val w = bicubic((x + xmin - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for (x in 0 until ksize) {
                val w = if (x < xmax) (if (ww != 0.0) k[x] / ww else k[x]) else 0.0
                val scaled = w * (1 shl PRECISION_BITS)
                weights[xx * ksize + x] = if (w < 0) (-0.5 + scaled).toInt() else (0.5 + scaled).toInt()
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coefficients(ksize, bounds, weights)
    }

    private fun clip8(v: Int): Byte = when {
        v >= (1 shl PRECISION_BITS shl 8) -> 255.toByte()
        v <= 0 -> 0
        else -> (v shr PRECISION_BITS).toByte()
    }

    /**
     * Resize an 8-bit RGB image of [inW] x [inH] to [outW] x [outH], returned as interleaved RGB (3 bytes a pixel).
     * The source may carry more channels and padded rows ([pixelStride] bytes a pixel, [rowStride] a row: RGBA8 as
     * `Bitmap.copyPixelsToBuffer` gives it), so a photo is never copied whole before it is resized. Bytes, not ints:
     * a 12-megapixel photo costs its 48 MB of RGBA here, not 192 MB of the app's Java heap.
     */
    fun bicubic(src: ByteArray, inW: Int, inH: Int, outW: Int, outH: Int, pixelStride: Int = 3,
                rowStride: Int = inW * pixelStride): ByteArray {
        require(inW > 0 && inH > 0 && outW > 0 && outH > 0) { "sizes must be positive: $inW x $inH -> $outW x $outH" }
        require(pixelStride >= 3 && rowStride >= inW * pixelStride) { "a pixel has 3 bytes or more, a row all its pixels" }
        require(src.size.toLong() >= rowStride.toLong() * (inH - 1) + inW.toLong() * pixelStride) {
            "expected $inW x $inH pixels of $pixelStride bytes in rows of $rowStride, got ${src.size} bytes"
        }
        // Pillow resamples horizontally first, then vertically (only the rows the vertical pass reads; the values are
        // the same either way); a pass whose size stays is skipped, as in Pillow
        var image = src
        var stride = pixelStride
        var row = rowStride
        if (outW != inW) {
            val c = coefficients(inW, outW)
            val out = ByteArray(outW * inH * 3)
            for (y in 0 until inH) {
                for (xx in 0 until outW) {
                    val xmin = c.bounds[xx * 2]
                    val xmax = c.bounds[xx * 2 + 1]
                    var s0 = 1 shl (PRECISION_BITS - 1)
                    var s1 = s0
                    var s2 = s0
                    for (x in 0 until xmax) {
                        val kx = c.weights[xx * c.ksize + x]
                        val p = y * row + (x + xmin) * stride
                        s0 += (image[p].toInt() and 0xff) * kx
                        s1 += (image[p + 1].toInt() and 0xff) * kx
                        s2 += (image[p + 2].toInt() and 0xff) * kx
                    }
                    val o = (y * outW + xx) * 3
                    out[o] = clip8(s0)
                    out[o + 1] = clip8(s1)
                    out[o + 2] = clip8(s2)
                }
            }
            image = out
            stride = 3
            row = outW * 3
        }
        if (outH != inH) {
            val c = coefficients(inH, outH)
            val out = ByteArray(outW * outH * 3)
            for (yy in 0 until outH) {
                val ymin = c.bounds[yy * 2]
                val ymax = c.bounds[yy * 2 + 1]
                for (x in 0 until outW) {
                    var s0 = 1 shl (PRECISION_BITS - 1)
                    var s1 = s0
                    var s2 = s0
                    for (y in 0 until ymax) {
                        val ky = c.weights[yy * c.ksize + y]
                        val p = (y + ymin) * row + x * stride
                        s0 += (image[p].toInt() and 0xff) * ky
                        s1 += (image[p + 1].toInt() and 0xff) * ky
                        s2 += (image[p + 2].toInt() and 0xff) * ky
                    }
                    val o = (yy * outW + x) * 3
                    out[o] = clip8(s0)
                    out[o + 1] = clip8(s1)
                    out[o + 2] = clip8(s2)
                }
            }
            return out
        }
        if (image !== src) return image
        // the same size: the pixels as they are, as interleaved RGB
        val out = ByteArray(inW * inH * 3)
        for (y in 0 until inH) {
            for (x in 0 until inW) {
                val p = y * row + x * stride
                val o = (y * inW + x) * 3
                out[o] = image[p]
                out[o + 1] = image[p + 1]
                out[o + 2] = image[p + 2]
            }
        }
        return out
    }
}
