import Foundation
import XCTest
@testable import EMOCore

/// EMOCore against real exported artifacts: `tests/test_ios_core.py` exports them with `emo-export`, writes the
/// bundled photos' decoded pixels as binary PPM and points `EMO_TESTDATA` at a folder holding `artifacts/{export}/`,
/// `pixels/` and `out/` (which the Python side reads back).
final class EMOCoreTests: XCTestCase {
    struct MissingTestData: Error, CustomStringConvertible {
        let description = "EMO_TESTDATA=DIR is required (tests/test_ios_core.py sets it)"
    }

    func dataRoot() throws -> URL {
        guard let path = ProcessInfo.processInfo.environment["EMO_TESTDATA"] else { throw MissingTestData() }
        return URL(fileURLWithPath: path)
    }

    func sidecarURLs() throws -> [URL] {
        let fm = FileManager.default
        let artifacts = try dataRoot().appendingPathComponent("artifacts")
        var found: [URL] = []
        for dir in try fm.contentsOfDirectory(at: artifacts, includingPropertiesForKeys: nil) {
            for file in try fm.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            where file.lastPathComponent.hasSuffix(".json") && !file.lastPathComponent.hasSuffix(".examples.json") {
                found.append(file)
            }
        }
        XCTAssertFalse(found.isEmpty, "no sidecars under \(artifacts.path)")
        return found.sorted { $0.path < $1.path }
    }

    func load(_ url: URL) throws -> (Sidecar, ExampleSet) {
        let sidecar = try Sidecar.parse(Data(contentsOf: url), where: url.lastPathComponent)
        let name = try XCTUnwrap(sidecar.examplesFile)
        let examples = try ExampleSet.parse(Data(contentsOf: url.deletingLastPathComponent().appendingPathComponent(name)), where: name)
        return (sidecar, examples)
    }

    /// A binary PPM (P6, 255) as an RGBA8 buffer with padded rows (as a CGContext may lay it out).
    func readPPM(_ url: URL, padding: Int) throws -> (rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int) {
        let bytes = [UInt8](try Data(contentsOf: url))
        var pos = 0
        func token() -> String {
            while bytes[pos] == 0x20 || bytes[pos] == 0x0a || bytes[pos] == 0x0d || bytes[pos] == 0x09 { pos += 1 }
            let start = pos
            while !(bytes[pos] == 0x20 || bytes[pos] == 0x0a || bytes[pos] == 0x0d || bytes[pos] == 0x09) { pos += 1 }
            return String(decoding: bytes[start..<pos], as: UTF8.self)
        }
        XCTAssertEqual(token(), "P6")
        let w = Int(token())!, h = Int(token())!
        XCTAssertEqual(token(), "255")
        pos += 1
        let bytesPerRow = w * 4 + padding
        var rgba = [UInt8](repeating: 0, count: bytesPerRow * h)
        for y in 0..<h {
            for x in 0..<w {
                let s = pos + (y * w + x) * 3, d = y * bytesPerRow + x * 4
                rgba[d] = bytes[s]; rgba[d + 1] = bytes[s + 1]; rgba[d + 2] = bytes[s + 2]; rgba[d + 3] = 255
            }
        }
        return (rgba, w, h, bytesPerRow)
    }

    func testPreprocessingEqualsPythonBitForBit() throws {
        var checked = 0
        for url in try sidecarURLs() {
            let (sidecar, set) = try load(url)
            let preprocessor = Preprocessor(sidecar: sidecar)
            for example in set.examples {
                let ppm = try dataRoot().appendingPathComponent("pixels").appendingPathComponent(
                    example.source.replacingOccurrences(of: ".jpg", with: ".ppm"))
                let image = try readPPM(ppm, padding: 16)
                let tensor = preprocessor.tensor(rgba: image.rgba, width: image.width, height: image.height,
                                                 bytesPerRow: image.bytesPerRow)
                XCTAssertEqual(tensor.count, example.input.count)
                var worst: Float = 0
                for i in tensor.indices { worst = max(worst, abs(tensor[i] - example.input[i])) }
                XCTAssertEqual(worst, 0, "\(url.lastPathComponent) \(example.source): max |diff| \(worst)")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 3)
    }

    func testTopFiveFromExpectedOutputsMatchesTheFile() throws {
        for url in try sidecarURLs() {
            let (sidecar, set) = try load(url)
            for example in set.examples {
                let predictions = try Classify.predictions(example.output, sidecar: sidecar)
                XCTAssertEqual(predictions.map { $0.index }, example.top5)
                XCTAssertEqual(predictions.map { $0.label }, example.top5Labels)
                XCTAssertEqual(Classify.softmax(example.output).reduce(0, +), 1, accuracy: 1e-4)
            }
        }
    }

    func testAgreementPassesOnExpectedAndFailsWhenTheBestClassMoves() throws {
        for url in try sidecarURLs() {
            let (_, set) = try load(url)
            let same = set.agreement(set.examples.map { $0.output })
            XCTAssertTrue(same.passed, same.status)
            XCTAssertEqual(same.maxAbsDiff, 0)
            var moved = set.examples.map { $0.output }
            let best = Classify.topK(moved[0], 1)[0]
            moved[0][best] -= 100
            let result = set.agreement(moved)
            XCTAssertFalse(result.passed)
            XCTAssertTrue(result.status.hasPrefix("failed: "), result.status)
            XCTAssertFalse(set.agreement(Array(moved.prefix(1))).passed)
        }
    }

    func testResampleIdentityAndFlatImages() {
        let rgb = (0..<(17 * 9 * 3)).map { UInt8(($0 * 37) % 256) }
        XCTAssertEqual(Resample.bicubic(rgb, inW: 17, inH: 9, outW: 17, outH: 9), rgb)
        let flat = [UInt8](repeating: 77, count: 8 * 8 * 3)
        XCTAssertTrue(Resample.bicubic(flat, inW: 8, inH: 8, outW: 3, outH: 5).allSatisfy { $0 == 77 })
        XCTAssertEqual(Classify.topK([0, 2, -1, 2], 3), [1, 3, 0])
    }
}
