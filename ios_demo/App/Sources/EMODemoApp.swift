import CoreML
import EMOCore
import PhotosUI
import SwiftUI

@main
struct EMODemoApp: App {
    private let headless = BenchmarkMode.runIfRequested()
    var body: some Scene {
        WindowGroup { headless ? AnyView(Text("benchmarking…")) : AnyView(ContentView()) }
    }
}

/// Model and compute-unit pickers, a photo picker (the camera screen is `CameraView`), top-5 with latency, and
/// the self-test on the bundled examples. All pre/post-processing is EMOCore's.
struct ContentView: View {
    @State private var models = ModelStore.all()
    @State private var selected: String?
    @State private var units = "ALL"
    @State private var report = ""
    @State private var photo: PhotosPickerItem?

    var body: some View {
        Form {
            Picker("Model", selection: $selected) {
                ForEach(models) { Text($0.id).tag(Optional($0.id)) }
            }
            Picker("Compute units", selection: $units) {
                ForEach(CoreMLRunner.unitNames, id: \.0) { Text($0.0).tag($0.0) }
            }
            PhotosPicker("Classify a photo", selection: $photo, matching: .images)
            NavigationLink("Camera") { CameraView(runner: { try runner() }) }
            Button("Self-test") { report = selfTest() }
            Text(report).font(.system(.footnote, design: .monospaced))
        }
        .onAppear { selected = selected ?? models.first?.id }
        .onChange(of: photo) { item in
            Task {
                guard let data = try? await item?.loadTransferable(type: Data.self), let image = UIImage(data: data) else { return }
                report = (try? classify(image)) ?? "could not classify"
            }
        }
    }

    func runner() throws -> CoreMLRunner {
        guard let model = models.first(where: { $0.id == selected }) else { throw ModelContractError("no model selected") }
        let unit = CoreMLRunner.unitNames.first { $0.0 == units }!.1
        return try CoreMLRunner(compiledURL: try ModelStore.compiled(model.modelURL), sidecar: model.sidecar, computeUnits: unit)
    }

    func classify(_ image: UIImage) throws -> String {
        let runner = try runner()
        let rgba = image.rgbaPixels()  // upright (UIImage applies the EXIF orientation when drawing)
        let input = Preprocessor(sidecar: runner.sidecar).tensor(rgba: rgba.bytes, width: rgba.width, height: rgba.height)
        let start = DispatchTime.now().uptimeNanoseconds
        let output = try runner.run(input)
        let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        return Classify.predictions(output, sidecar: runner.sidecar)
            .map { String(format: "%-28@ %.3f", $0.label as NSString, $0.probability) }.joined(separator: "\n")
            + String(format: "\n%.2f ms (%@)", ms, units)
    }

    func selfTest() -> String {
        guard let model = models.first(where: { $0.id == selected }), let set = model.examples else { return "no examples file" }
        do {
            let runner = try runner()
            let a = set.agreement(try set.examples.map { try runner.run($0.input) })
            return String(format: "%@ on %d examples (%@)\nmax |diff| %.2e, cosine %.6f, top-1 %.0f%%, top-5 %.0f%%",
                          a.status, a.numExamples, units, a.maxAbsDiff, a.cosine, a.top1Agreement * 100, a.top5Agreement * 100)
        } catch {
            return "self-test failed: \(error)"
        }
    }
}

extension UIImage {
    /// Upright RGBA8 pixels, drawn through UIKit so the image's orientation is applied.
    func rgbaPixels() -> (bytes: [UInt8], width: Int, height: Int) {
        let format = UIGraphicsImageRendererFormat()
        format.scale = 1
        let upright = UIGraphicsImageRenderer(size: size, format: format).image { _ in draw(at: .zero) }.cgImage!
        let w = upright.width, h = upright.height
        var bytes = [UInt8](repeating: 0, count: w * h * 4)
        let context = CGContext(data: &bytes, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue)!
        context.draw(upright, in: CGRect(x: 0, y: 0, width: w, height: h))
        return (bytes, w, h)
    }
}
