package org.emomobile.core

/**
 * The authors' eval transform (`emo.preprocess`), exactly, from an upright RGBA8 image (what
 * `Bitmap.copyPixelsToBuffer` writes for an `ARGB_8888` bitmap: R, G, B, A bytes, row-major, rows of `rowBytes`):
 * resize the shorter side to `int(max(H, W) / crop_pct)` (the sidecar's `input.preprocessing.crop_pct`, 0.875 when
 * absent) with Pillow's bicubic (bit-exact, see [Resample]), centre-crop H x W, scale to [0, 1], then lay the tensor
 * out as the sidecar says (NCHW or NHWC), normalising with the sidecar's mean/std only when the graph does not.
 *
 * Colour policy, the same as the reference's and the iOS core's: the pixels are the decoded values, never
 * colour-converted. Pillow's `convert("RGB")` applies no ICC profile; on Android `Bitmap.getPixels` would convert a
 * Display P3 photo to sRGB, `copyPixelsToBuffer` copies the bytes as decoded (and unpremultiplied, when the decoder
 * was asked for it, as Pillow keeps a transparent pixel's colour).
 */
class Preprocessor(private val sidecar: Sidecar) {

    /** The input tensor for one image (batch 1), ready to copy into the runtime's input buffer. */
    fun tensor(rgba: ByteArray, width: Int, height: Int, rowBytes: Int = width * 4): FloatArray =
        layout(crop(rgba, width, height, rowBytes), sidecar)

    /** The resized and centre-cropped 8-bit RGB pixels (interleaved, [Sidecar.height] x [Sidecar.width]). */
    fun crop(rgba: ByteArray, width: Int, height: Int, rowBytes: Int = width * 4): ByteArray =
        resizeAndCrop(rgba, width, height, 4, rowBytes, sidecar.height, sidecar.width, sidecar.preprocessing.cropPct)

    companion object {
        /**
         * The most pixels the app decodes a photo at: 4096 x 4096. A 12-megapixel photo is decoded whole and
         * preprocessed bit for bit as `emo.preprocess` does; a larger one (a 50-megapixel sensor) would need more of
         * the app's Java heap than a phone grants, so the platform's decoder scales it down first ([decodeSize]) and
         * the exact resize starts from that: a documented change of the pixels fed, never an out-of-memory crash.
         */
        const val MAX_DECODE_PIXELS = 1 shl 24

        /** (width, height) to decode a [width] x [height] photo at: itself up to [MAX_DECODE_PIXELS], else scaled
         * down uniformly to fit. */
        fun decodeSize(width: Int, height: Int): IntArray {
            require(width > 0 && height > 0) { "the image is empty (${width}x$height pixels)" }
            val pixels = width.toLong() * height
            if (pixels <= MAX_DECODE_PIXELS) return intArrayOf(width, height)
            val scale = Math.sqrt(MAX_DECODE_PIXELS.toDouble() / pixels)
            var w = Math.max(1, (width * scale).toInt())
            var h = Math.max(1, (height * scale).toInt())
            if (w.toLong() * h > MAX_DECODE_PIXELS) {  // rounding, or a side held at one pixel, never exceeds the bound
                if (w <= h) h = MAX_DECODE_PIXELS / w else w = MAX_DECODE_PIXELS / h
            }
            return intArrayOf(w, h)
        }

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

        /** Resize (shorter side) and centre-crop [pixels] ([pixelStride] bytes a pixel, R, G, B first; rows of
         * [rowStride] bytes) to interleaved RGB of [outH] x [outW]. */
        fun resizeAndCrop(pixels: ByteArray, width: Int, height: Int, pixelStride: Int, rowStride: Int, outH: Int,
                          outW: Int, cropPct: Double): ByteArray {
            require(width > 0 && height > 0) { "the image is empty (${width}x$height pixels)" }
            val size = resizedSize(width, height, outH, outW, cropPct)
            val nw = size[0]
            val nh = size[1]
            val resized = Resample.bicubic(pixels, width, height, nw, nh, pixelStride, rowStride)
            // Python's round() rounds half to even, as Math.rint does
            val top = Math.rint((nh - outH) / 2.0).toInt()
            val left = Math.rint((nw - outW) / 2.0).toInt()
            val out = ByteArray(outH * outW * 3)
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
        fun layout(rgb: ByteArray, sidecar: Sidecar): FloatArray {
            val h = sidecar.height
            val w = sidecar.width
            val out = FloatArray(3 * h * w)
            val norm = sidecar.normalization
            val pixels = sidecar.layout == "image"
            for (y in 0 until h) {
                for (x in 0 until w) {
                    for (c in 0 until 3) {
                        val byte = (rgb[(y * w + x) * 3 + c].toInt() and 0xff).toFloat()
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
