import CoreGraphics
import EMOCore
import Foundation
import ImageIO

/// Decoded, upright RGBA8 pixels of a photo, for EMOCore's `Preprocessor`.
enum Pixels {
    /// Up to EMOCore's decode bound the photo is decoded whole, as it is stored, and EMOCore turns it upright
    /// (`Orientation`, Pillow's `exif_transpose`): the pixels are exactly the decoded ones. A larger photo is decoded
    /// scaled down to the bound by ImageIO, which also applies the orientation (a documented change of the pixels, as
    /// on Android). The pixels are drawn in the image's own RGB colour space, so values are not colour-converted
    /// (Pillow does not convert either).
    static func rgba(_ data: Data) -> (bytes: [UInt8], width: Int, height: Int)? {
        guard let source = CGImageSourceCreateWithData(data as CFData, nil),
              let properties = CGImageSourceCopyPropertiesAtIndex(source, 0, nil) as? [CFString: Any],
              let w = properties[kCGImagePropertyPixelWidth] as? Int, let h = properties[kCGImagePropertyPixelHeight] as? Int,
              w > 0, h > 0 else {
            return nil
        }
        let (dw, dh) = Preprocessor.decodeSize(width: w, height: h)
        if dw == w && dh == h {
            guard let image = CGImageSourceCreateImageAtIndex(source, 0, nil), let pixels = rgba(image) else { return nil }
            let orientation = (properties[kCGImagePropertyOrientation] as? NSNumber)?.intValue ?? 1
            return Orientation.upright(pixels.bytes, width: pixels.width, height: pixels.height,
                                       bytesPerRow: pixels.width * 4, orientation: orientation)
        }
        let options = [kCGImageSourceCreateThumbnailFromImageAlways: true, kCGImageSourceCreateThumbnailWithTransform: true,
                       kCGImageSourceThumbnailMaxPixelSize: max(dw, dh)] as CFDictionary
        guard let image = CGImageSourceCreateThumbnailAtIndex(source, 0, options) else { return nil }
        return rgba(image)
    }

    /// The image's pixels as RGBA8 (the context writes into `bytes` only inside `withUnsafeMutableBytes`, where the
    /// pointer is valid).
    static func rgba(_ image: CGImage) -> (bytes: [UInt8], width: Int, height: Int)? {
        let w = image.width, h = image.height
        let space = image.colorSpace.flatMap { $0.model == .rgb ? $0 : nil } ?? CGColorSpace(name: CGColorSpace.sRGB)!
        var bytes = [UInt8](repeating: 0, count: w * h * 4)
        let drawn = bytes.withUnsafeMutableBytes { buffer -> Bool in
            guard let context = CGContext(data: buffer.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                          space: space, bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue) else { return false }
            context.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        return drawn ? (bytes, w, h) : nil
    }
}
