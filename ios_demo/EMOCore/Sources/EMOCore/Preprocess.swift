import Foundation

/// The authors' eval transform (`emo.preprocess`), exactly, on an upright RGBA8 buffer (what a `CGContext` with
/// `premultipliedLast` draws an opaque photo into): resize the shorter side to `Int(max(H, W) / crop_pct)` (the
/// sidecar's `input.preprocessing.crop_pct`, 0.875 when absent) with Pillow's bicubic (bit-exact, see `Resample`),
/// centre-crop H x W, scale to [0, 1], lay out as the sidecar says, normalise only when the graph does not.
///
/// Colour policy, the same as the reference's and the Android core's: the pixels are the decoded values, never
/// colour-converted (Pillow's `convert("RGB")` applies no ICC profile): the app draws a photo in its own RGB colour
/// space, so a Display P3 photo keeps its values.
public struct Preprocessor {
    public let sidecar: Sidecar

    /// The most pixels the app decodes a photo at: 4096 x 4096. A 12-megapixel photo is decoded whole and
    /// preprocessed bit for bit as `emo.preprocess` does; a larger one (a 48-megapixel ProRAW-size JPEG) is scaled
    /// down by ImageIO first (`decodeSize`), and the exact resize starts from that: a documented change of the pixels
    /// fed, the same bound as Android's.
    public static let maxDecodePixels = 1 << 24

    /// (width, height) to decode a `width` x `height` photo at: itself up to `maxDecodePixels`, else scaled down
    /// uniformly to fit.
    public static func decodeSize(width: Int, height: Int) -> (Int, Int) {
        precondition(width > 0 && height > 0, "the image is empty (\(width)x\(height) pixels)")
        let pixels = width * height
        if pixels <= maxDecodePixels { return (width, height) }
        let scale = (Double(maxDecodePixels) / Double(pixels)).squareRoot()
        var w = max(1, Int(Double(width) * scale)), h = max(1, Int(Double(height) * scale))
        if w * h > maxDecodePixels {  // rounding, or a side held at one pixel, never exceeds the bound
            if w <= h { h = maxDecodePixels / w } else { w = maxDecodePixels / h }
        }
        return (w, h)
    }

    public init(sidecar: Sidecar) { self.sidecar = sidecar }

    /// The input tensor for one image (batch 1).
    public func tensor(rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int? = nil) -> [Float] {
        Preprocessor.layout(crop(rgba: rgba, width: width, height: height, bytesPerRow: bytesPerRow), sidecar: sidecar)
    }

    /// Resized and centre-cropped interleaved RGB bytes (sidecar height x width).
    public func crop(rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int? = nil) -> [UInt8] {
        Preprocessor.resizeAndCrop(rgba: rgba, width: width, height: height, bytesPerRow: bytesPerRow ?? width * 4,
                                   outH: sidecar.height, outW: sidecar.width, cropPct: sidecar.preprocessing.cropPct)
    }

    /// (width, height) after the shorter-side resize, as `emo.data.to_unit_array` computes it.
    public static func resizedSize(width: Int, height: Int, outH: Int, outW: Int, cropPct: Double) -> (Int, Int) {
        precondition(cropPct > 0 && cropPct <= 1, "the crop fraction must be in (0, 1], not \(cropPct)")
        let short = Int(Double(max(outH, outW)) / cropPct)
        if width <= height { return (short, Int(Double(short * height) / Double(width))) }
        return (Int(Double(short * width) / Double(height)), short)
    }

    public static func resizeAndCrop(rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int, outH: Int, outW: Int,
                                     cropPct: Double) -> [UInt8] {
        precondition(width > 0 && height > 0, "the image is empty (\(width)x\(height) pixels)")
        precondition(rgba.count >= bytesPerRow * (height - 1) + width * 4, "the RGBA buffer is too small")
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let p = y * bytesPerRow + x * 4, o = (y * width + x) * 3
                rgb[o] = rgba[p]; rgb[o + 1] = rgba[p + 1]; rgb[o + 2] = rgba[p + 2]
            }
        }
        let (nw, nh) = resizedSize(width: width, height: height, outH: outH, outW: outW, cropPct: cropPct)
        let resized = (nw == width && nh == height) ? rgb : Resample.bicubic(rgb, inW: width, inH: height, outW: nw, outH: nh)
        // Python's round() rounds half to even
        let top = Int((Double(nh - outH) / 2.0).rounded(.toNearestOrEven))
        let left = Int((Double(nw - outW) / 2.0).rounded(.toNearestOrEven))
        var out = [UInt8](repeating: 0, count: outH * outW * 3)
        for y in 0..<outH {
            for x in 0..<outW {
                let sy = y + top, sx = x + left
                if sy < 0 || sy >= nh || sx < 0 || sx >= nw { continue }  // PIL pads a crop outside with black
                for c in 0..<3 { out[(y * outW + x) * 3 + c] = resized[(sy * nw + sx) * 3 + c] }
            }
        }
        return out
    }

    /// Interleaved RGB bytes (H x W) -> the tensor the sidecar's graph takes, with NumPy's float32 operations.
    public static func layout(_ rgb: [UInt8], sidecar: Sidecar) -> [Float] {
        let h = sidecar.height, w = sidecar.width
        var out = [Float](repeating: 0, count: 3 * h * w)
        let norm = sidecar.normalization
        let pixels = sidecar.layout == "image", nhwc = sidecar.layout == "NHWC"
        for y in 0..<h {
            for x in 0..<w {
                for c in 0..<3 {
                    let byte = Float(rgb[(y * w + x) * 3 + c])
                    var v = pixels ? byte : byte / 255
                    if !pixels && !norm.inGraph { v = (v - norm.mean[c]) / norm.std[c] }
                    out[nhwc ? (y * w + x) * 3 + c : (c * h + y) * w + x] = v
                }
            }
        }
        return out
    }
}

/// A photo's EXIF orientation (1...8) applied to its decoded RGBA8 pixels, as Pillow's `ImageOps.exif_transpose`
/// does in `emo.data.load_image`: a pure permutation of the pixels (flips and quarter turns), so the upright photo
/// holds exactly the decoded values. An unknown orientation is taken as 1 (upright), as Pillow does.
public enum Orientation {
    public static func upright(_ rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int,
                               orientation: Int) -> (bytes: [UInt8], width: Int, height: Int) {
        precondition(rgba.count >= bytesPerRow * (height - 1) + width * 4, "the RGBA buffer is too small")
        let turned = orientation >= 5 && orientation <= 8  // the sides swap
        let w = turned ? height : width, h = turned ? width : height
        var out = [UInt8](repeating: 0, count: w * h * 4)
        for y in 0..<h {
            for x in 0..<w {
                let sx: Int, sy: Int
                switch orientation {
                case 2: (sx, sy) = (width - 1 - x, y)                // mirrored
                case 3: (sx, sy) = (width - 1 - x, height - 1 - y)   // upside down
                case 4: (sx, sy) = (x, height - 1 - y)               // mirrored upside down
                case 5: (sx, sy) = (y, x)                            // transposed
                case 6: (sx, sy) = (y, height - 1 - x)               // turned a quarter anticlockwise: turn it back
                case 7: (sx, sy) = (width - 1 - y, height - 1 - x)   // transversed
                case 8: (sx, sy) = (width - 1 - y, x)                // turned a quarter clockwise: turn it back
                default: (sx, sy) = (x, y)
                }
                let s = sy * bytesPerRow + sx * 4, d = (y * w + x) * 4
                out[d] = rgba[s]; out[d + 1] = rgba[s + 1]; out[d + 2] = rgba[s + 2]; out[d + 3] = rgba[s + 3]
            }
        }
        return (out, w, h)
    }
}
