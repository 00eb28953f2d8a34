import AVFoundation
import EMOCore
import SwiftUI
import Vision

/// Live camera classification: AVFoundation frames -> Vision (`--classifier` artifacts) or EMOCore preprocessing +
/// `MLModel` (tensor-input artifacts).
struct CameraView: View {
    let runner: () throws -> CoreMLRunner
    @StateObject private var camera = Camera()

    var body: some View {
        VStack {
            Text(camera.label).font(.system(.body, design: .monospaced))
        }
        .onAppear { camera.start(runner: try? runner()) }
        .onDisappear { camera.stop() }
    }
}

final class Camera: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    @Published var label = "starting camera…"
    private let session = AVCaptureSession()
    private var runner: CoreMLRunner?
    private let queue = DispatchQueue(label: "camera")

    func start(runner: CoreMLRunner?) {
        self.runner = runner
        guard let device = AVCaptureDevice.default(for: .video), let input = try? AVCaptureDeviceInput(device: device) else {
            label = "no camera"
            return
        }
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.setSampleBufferDelegate(self, queue: queue)
        session.addOutput(output)
        output.connection(with: .video)?.videoRotationAngle = 90  // portrait: frames upright
        queue.async { self.session.startRunning() }
    }

    func stop() { session.stopRunning() }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let runner = runner, let pixels = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        let text: String
        if runner.sidecar.outputKind == "probabilities", let image = CIContext().createCGImage(CIImage(cvPixelBuffer: pixels), from: CIImage(cvPixelBuffer: pixels).extent),
           let top = try? runner.classify(image).prefix(5) {
            text = top.map { String(format: "%-28@ %.3f", $0.identifier as NSString, $0.confidence) }.joined(separator: "\n")
        } else {
            CVPixelBufferLockBaseAddress(pixels, .readOnly)
            let w = CVPixelBufferGetWidth(pixels), h = CVPixelBufferGetHeight(pixels), row = CVPixelBufferGetBytesPerRow(pixels)
            let base = CVPixelBufferGetBaseAddress(pixels)!.assumingMemoryBound(to: UInt8.self)
            var rgba = [UInt8](repeating: 0, count: row * h)
            for i in stride(from: 0, to: row * h, by: 4) {  // BGRA -> RGBA
                rgba[i] = base[i + 2]; rgba[i + 1] = base[i + 1]; rgba[i + 2] = base[i]; rgba[i + 3] = 255
            }
            CVPixelBufferUnlockBaseAddress(pixels, .readOnly)
            let input = Preprocessor(sidecar: runner.sidecar).tensor(rgba: rgba, width: w, height: h, bytesPerRow: row)
            let output = (try? runner.run(input)) ?? []
            text = output.isEmpty ? "prediction failed" : Classify.predictions(output, sidecar: runner.sidecar)
                .map { String(format: "%-28@ %.3f", $0.label as NSString, $0.probability) }.joined(separator: "\n")
        }
        DispatchQueue.main.async { self.label = text }
    }
}
