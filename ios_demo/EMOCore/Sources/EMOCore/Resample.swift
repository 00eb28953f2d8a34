/// Pillow's bicubic resize of 8-bit RGB, bit for bit (`libImaging/Resample.c`): the cubic kernel (a = -0.5) widened
/// by the downscale factor (antialiasing), weights in 22-bit fixed point, a horizontal pass rounded and clipped to
/// 8 bits, then a vertical pass. `emo.preprocess` resizes this way, so the app feeds the artifact the very tensor
/// PyTorch was checked on.
public enum Resample {
    static let precisionBits = 32 - 8 - 2

    static func cubic(_ xIn: Double) -> Double {
        let a = -0.5
        let x = abs(xIn)
        if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
        if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0.0
    }

    struct Coefficients {
        let ksize: Int
        let bounds: [Int]
        let weights: [Int]
    }

    static func coefficients(inSize: Int, outSize: Int) -> Coefficients {
        let scale = Double(Float(inSize)) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 2.0 * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds = [Int](repeating: 0, count: outSize * 2)
        var weights = [Int](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let ss = 1.0 / filterScale
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            var ww = 0.0
            for x in 0..<max(xmax, 0) {
                let w = cubic((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<ksize {
                let w = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0
                let scaled = w * Double(1 << precisionBits)
                weights[xx * ksize + x] = w < 0 ? Int(-0.5 + scaled) : Int(0.5 + scaled)
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coefficients(ksize: ksize, bounds: bounds, weights: weights)
    }

    static func clip8(_ v: Int) -> Int {
        if v >= (1 << (precisionBits + 8)) { return 255 }
        if v <= 0 { return 0 }
        return v >> precisionBits
    }

    /// Resize interleaved RGB bytes (`inW` x `inH`, row-major, values 0...255) to `outW` x `outH`.
    public static func bicubic(_ rgb: [UInt8], inW: Int, inH: Int, outW: Int, outH: Int) -> [UInt8] {
        precondition(rgb.count == inW * inH * 3, "expected \(inW * inH * 3) values for \(inW) x \(inH) RGB")
        var image = rgb
        var w = inW
        let start = 1 << (precisionBits - 1)
        if outW != inW {
            let c = coefficients(inSize: inW, outSize: outW)
            var out = [UInt8](repeating: 0, count: outW * inH * 3)
            for y in 0..<inH {
                for xx in 0..<outW {
                    let xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1]
                    var s0 = start, s1 = start, s2 = start
                    for x in 0..<xmax {
                        let kx = c.weights[xx * c.ksize + x]
                        let p = (y * w + x + xmin) * 3
                        s0 += Int(image[p]) * kx
                        s1 += Int(image[p + 1]) * kx
                        s2 += Int(image[p + 2]) * kx
                    }
                    let o = (y * outW + xx) * 3
                    out[o] = UInt8(clip8(s0)); out[o + 1] = UInt8(clip8(s1)); out[o + 2] = UInt8(clip8(s2))
                }
            }
            image = out
            w = outW
        }
        if outH != inH {
            let c = coefficients(inSize: inH, outSize: outH)
            var out = [UInt8](repeating: 0, count: w * outH * 3)
            for yy in 0..<outH {
                let ymin = c.bounds[yy * 2], ymax = c.bounds[yy * 2 + 1]
                for x in 0..<w {
                    var s0 = start, s1 = start, s2 = start
                    for y in 0..<ymax {
                        let ky = c.weights[yy * c.ksize + y]
                        let p = ((y + ymin) * w + x) * 3
                        s0 += Int(image[p]) * ky
                        s1 += Int(image[p + 1]) * ky
                        s2 += Int(image[p + 2]) * ky
                    }
                    let o = (yy * w + x) * 3
                    out[o] = UInt8(clip8(s0)); out[o + 1] = UInt8(clip8(s1)); out[o + 2] = UInt8(clip8(s2))
                }
            }
            image = out
        }
        return image
    }
}
