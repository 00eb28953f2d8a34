import Foundation

/// The authors' eval transform (`emo.preprocess`), exactly, on an upright RGBA8 buffer (what a `CGContext` with
/// `premultipliedLast` draws an opaque photo into): resize the shorter side to `Int(max(H, W) / crop_pct)` (the
/// sidecar's `input.preprocessing.crop_pct`, 0.875 when absent) with Pillow's bicubic (bit-exact, see `Resample`),
/// centre-crop H x W, scale to [0, 1], lay out as the sidecar says, normalise only when the graph does not.
public struct Preprocessor {
    public let sidecar: Sidecar

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
