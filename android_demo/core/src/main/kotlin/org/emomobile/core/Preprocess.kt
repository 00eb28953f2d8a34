package org.emomobile.core

/**
 * The authors' eval transform (`emo.preprocess`), exactly, from an upright ARGB image (Android's
 * `Bitmap.getPixels` order: `0xAARRGGBB`, row-major): resize the shorter side to `int(max(H, W) / crop_pct)` (the
 * sidecar's `input.preprocessing.crop_pct`, 0.875 when absent) with Pillow's bicubic (bit-exact, see [Resample]),
 * centre-crop H x W, scale to [0, 1], then lay the tensor out as the sidecar says (NCHW or NHWC), normalising with the
 * sidecar's mean/std only when the graph does not.
 */
class Preprocessor(private val sidecar: Sidecar) {

    /** The input tensor for one image (batch 1), ready to copy into the runtime's input buffer. */
    fun tensor(argb: IntArray, width: Int, height: Int): FloatArray =
        layout(crop(argb, width, height), sidecar)

    /** The resized and centre-cropped 8-bit RGB pixels (interleaved, [Sidecar.height] x [Sidecar.width]). */
    fun crop(argb: IntArray, width: Int, height: Int): IntArray =
        resizeAndCrop(argb, width, height, sidecar.height, sidecar.width, sidecar.preprocessing.cropPct)

    companion object {
        /** (width, height) after the shorter-side resize, as `emo.data.to_unit_array` computes it. */
        fun resizedSize(width: Int, height: Int, outH: Int, outW: Int, cropPct: Double): IntArray {
            require(cropPct > 0.0 && cropPct <= 1.0) { "the crop fraction must be in (0, 1], not $cropPct" }
            val short = (Math.max(outH, outW) / cropPct).toInt()
            return if (width <= height) {
                intArrayOf(short, (short.toLong() * height).toDouble().div(width).toInt())
            } else {
                intArrayOf((short.toLong() * width).toDouble().div(height).toInt(), short)
            }
        }

        fun resizeAndCrop(argb: IntArray, width: Int, height: Int, outH: Int, outW: Int, cropPct: Double): IntArray {
            require(width > 0 && height > 0) { "the image is empty (${width}x$height pixels)" }
            require(argb.size == width * height) { "expected ${width * height} ARGB pixels, got ${argb.size}" }
            val rgb = IntArray(width * height * 3)
            for (i in 0 until width * height) {
                val p = argb[i]
                rgb[i * 3] = (p shr 16) and 0xff
                rgb[i * 3 + 1] = (p shr 8) and 0xff
                rgb[i * 3 + 2] = p and 0xff
            }
            val size = resizedSize(width, height, outH, outW, cropPct)
            val nw = size[0]
            val nh = size[1]
            val resized = if (nw == width && nh == height) rgb else Resample.bicubic(rgb, width, height, nw, nh)
            // Python's round() rounds half to even, as Math.rint does
            val top = Math.rint((nh - outH) / 2.0).toInt()
            val left = Math.rint((nw - outW) / 2.0).toInt()
            val out = IntArray(outH * outW * 3)
            for (y in 0 until outH) {
                for (x in 0 until outW) {
                    val sy = y + top
                    val sx = x + left
                    if (sy < 0 || sy >= nh || sx < 0 || sx >= nw) continue // PIL pads a crop outside with black
                    for (c in 0 until 3) out[(y * outW + x) * 3 + c] = resized[(sy * nw + sx) * 3 + c]
                }
            }
            return out
        }

        /** Interleaved 8-bit RGB (H x W) -> the tensor the sidecar's graph takes. */
        fun layout(rgb: IntArray, sidecar: Sidecar): FloatArray {
            val h = sidecar.height
            val w = sidecar.width
            val out = FloatArray(3 * h * w)
            val norm = sidecar.normalization
            val pixels = sidecar.layout == "image"
            for (y in 0 until h) {
                for (x in 0 until w) {
                    for (c in 0 until 3) {
                        val byte = rgb[(y * w + x) * 3 + c].toFloat()
                        // the same float32 operations as NumPy: x / 255, then (x - mean) / std
                        var v = if (pixels) byte else byte / 255f
                        if (!pixels && !norm.inGraph) v = (v - norm.mean[c]) / norm.std[c]
                        val index = if (sidecar.layout == "NHWC") (y * w + x) * 3 + c else (c * h + y) * w + x
                        out[index] = v
                    }
                }
            }
            return out
        }
    }
}
