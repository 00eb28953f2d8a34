import AVFoundation
import EMOCore
import SwiftUI

/// Live classification of the back camera's frames (upright, portrait) with EMOCore's preprocessing, the same for
/// every model. The label under the preview shows the latest frame's top-5.
struct CameraView: View {
    @ObservedObject var holder: ModelHolder
    @StateObject private var camera = Camera()

    var body: some View {
        VStack(alignment: .leading) {
            Text(camera.label).font(.system(.footnote, design: .monospaced))
            Spacer()
        }
        .padding()
        .navigationTitle("Camera")
        .onAppear { camera.start(holder: holder) }
        .onDisappear { camera.stop() }
    }
}

final class Camera: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    @Published var label = "starting the camera…"
    private let session = AVCaptureSession()
    private weak var holder: ModelHolder?
    private var configured = false

    func start(holder: ModelHolder) {
        self.holder = holder
        AVCaptureDevice.requestAccess(for: .video) { granted in
            guard granted else {
                DispatchQueue.main.async { self.label = "camera access denied: allow it in Settings" }
                return
            }
            inference.async { self.configureAndRun() }
        }
    }

    func stop() {
        inference.async { if self.session.isRunning { self.session.stopRunning() } }
    }

    /// On `inference` (startRunning blocks; frames are delivered there too, so a frame never races a model change).
    private func configureAndRun() {
        if !configured {
            guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
                  let input = try? AVCaptureDeviceInput(device: device) else {
                DispatchQueue.main.async { self.label = "no camera" }
                return
            }
            session.beginConfiguration()
            if session.canSetSessionPreset(.hd1280x720) { session.sessionPreset = .hd1280x720 }
            let output = AVCaptureVideoDataOutput()
            output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
            output.alwaysDiscardsLateVideoFrames = true
            output.setSampleBufferDelegate(self, queue: inference)
            guard session.canAddInput(input), session.canAddOutput(output) else {
                session.commitConfiguration()
                DispatchQueue.main.async { self.label = "the camera cannot be used for video data" }
                return
            }
            session.addInput(input)
            session.addOutput(output)
            if let connection = output.connection(with: .video) {  // portrait: frames upright
                if #available(iOS 17.0, *) {
                    if connection.isVideoRotationAngleSupported(90) { connection.videoRotationAngle = 90 }
                } else if connection.isVideoOrientationSupported {
                    connection.videoOrientation = .portrait
                }
            }
            session.commitConfiguration()
            configured = true
        }
        session.startRunning()
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let holder = holder, let pixels = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        CVPixelBufferLockBaseAddress(pixels, .readOnly)
        let w = CVPixelBufferGetWidth(pixels), h = CVPixelBufferGetHeight(pixels), row = CVPixelBufferGetBytesPerRow(pixels)
        guard let base = CVPixelBufferGetBaseAddress(pixels) else {
            CVPixelBufferUnlockBaseAddress(pixels, .readOnly)
            return
        }
        let bgra = [UInt8](UnsafeRawBufferPointer(start: base, count: row * h))
        CVPixelBufferUnlockBaseAddress(pixels, .readOnly)
        let text = holder.classify(ImageTensor.rgbaFromBGRA(bgra), width: w, height: h, bytesPerRow: row)
        DispatchQueue.main.async { self.label = text }
    }
}
