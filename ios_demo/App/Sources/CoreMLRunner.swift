import CoreML
import EMOCore
import Foundation
import Vision

/// One Core ML artifact with its sidecar: `MLModel` prediction for tensor-input models, Vision's `VNCoreMLRequest`
/// for `--classifier` ones (Vision scales and crops the camera frame itself; the self-test always uses `MLModel`
/// on the stored tensors so the comparison with PyTorch is exact).
final class CoreMLRunner {
    let sidecar: Sidecar
    let model: MLModel
    let computeUnits: MLComputeUnits

    static let unitNames: [(String, MLComputeUnits)] = [("CPU_ONLY", .cpuOnly), ("CPU_AND_GPU", .cpuAndGPU),
                                                         ("CPU_AND_NE", .cpuAndNeuralEngine), ("ALL", .all)]

    init(compiledURL: URL, sidecar: Sidecar, computeUnits: MLComputeUnits) throws {
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        self.model = try MLModel(contentsOf: compiledURL, configuration: config)
        self.sidecar = sidecar
        self.computeUnits = computeUnits
    }

    /// One image's tensor (batch 1, the sidecar's layout) -> the output row (logits or probabilities).
    func run(_ input: [Float]) throws -> [Float] {
        let batch = max(sidecar.batch, 1)
        let provider: MLFeatureProvider
        if sidecar.layout == "image" {
            provider = try MLDictionaryFeatureProvider(dictionary: [sidecar.inputName: MLFeatureValue(pixelBuffer: try pixelBuffer(input))])
        } else {
            let shape = sidecar.layout == "NHWC" ? [batch, sidecar.height, sidecar.width, 3] : [batch, 3, sidecar.height, sidecar.width]
            let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
            let pointer = array.dataPointer.bindMemory(to: Float.self, capacity: input.count * batch)
            for b in 0..<batch { for i in input.indices { pointer[b * input.count + i] = input[i] } }
            provider = try MLDictionaryFeatureProvider(dictionary: [sidecar.inputName: MLFeatureValue(multiArray: array)])
        }
        let result = try model.prediction(from: provider)
        if sidecar.outputKind == "probabilities", let dict = result.featureValue(for: sidecar.outputName)?.dictionaryValue {
            // the classifier's probabilities are keyed by label: back to class order
            return (0..<sidecar.numClasses).map { Float(truncating: dict[sidecar.label($0)] ?? 0) }
        }
        guard let out = result.featureValue(for: sidecar.outputName)?.multiArrayValue else {
            throw ModelContractError("the model has no output '\(sidecar.outputName)'")
        }
        return (0..<sidecar.numClasses).map { Float(truncating: out[$0]) }
    }

    /// An `ImageType` model takes BGRA pixels: the NCHW 0...255 tensor of the examples file, as a pixel buffer.
    private func pixelBuffer(_ input: [Float]) throws -> CVPixelBuffer {
        var buffer: CVPixelBuffer?
        CVPixelBufferCreate(nil, sidecar.width, sidecar.height, kCVPixelFormatType_32BGRA, nil, &buffer)
        guard let pb = buffer else { throw ModelContractError("cannot allocate a pixel buffer") }
        CVPixelBufferLockBaseAddress(pb, [])
        defer { CVPixelBufferUnlockBaseAddress(pb, []) }
        let base = CVPixelBufferGetBaseAddress(pb)!.assumingMemoryBound(to: UInt8.self)
        let row = CVPixelBufferGetBytesPerRow(pb), plane = sidecar.height * sidecar.width
        for y in 0..<sidecar.height {
            for x in 0..<sidecar.width {
                let i = y * sidecar.width + x, p = y * row + x * 4
                base[p] = UInt8(input[2 * plane + i]); base[p + 1] = UInt8(input[plane + i])
                base[p + 2] = UInt8(input[i]); base[p + 3] = 255
            }
        }
        return pb
    }

    /// Vision path for `--classifier` artifacts on camera frames (centre crop, as the authors' transform).
    func classify(_ image: CGImage) throws -> [VNClassificationObservation] {
        let request = VNCoreMLRequest(model: try VNCoreMLModel(for: model))
        request.imageCropAndScaleOption = .centerCrop
        try VNImageRequestHandler(cgImage: image).perform([request])
        return request.results as? [VNClassificationObservation] ?? []
    }
}
