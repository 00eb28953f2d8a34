import Foundation

/// One artifact format of the contract (`emo.contract.vocabulary.Format`): the name `emo-export --format` takes and
/// the sidecar's `backend` holds, its file suffix, its precisions (the first is the default), its runtime family and
/// which apps run it.
public struct Format: Equatable {
    public let name: String
    public let tag: String
    public let suffix: String
    public let precisions: [String]
    public let runtime: String
    public var browser = false
    public var android = false
    public var ios = false
}

/// The words of the artifact contract, as `emo/contract/vocabulary.json` holds them: an XCTest compares every entry
/// with that file (tests/test_ios_core.py copies it in), so this table and Python's cannot drift apart.
public enum Vocabulary {
    public static let precisions = ["fp32", "fp16", "int8", "w8a16"]
    public static let quantized = ["int8", "w8a16"]
    public static let layouts = ["NCHW", "NHWC", "image"]
    public static let outputKinds = ["logits", "probabilities"]
    public static let variants = ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]
    public static let interpolations = ["bicubic"]
    public static let benchTargets = ["host", "browser", "adb", "mac", "ios", "aihub"]
    public static let sidecarSuffix = ".json"
    public static let examplesSuffix = ".examples.json"

    public static let formats = [
        Format(name: "onnx", tag: "onnx", suffix: ".onnx", precisions: ["fp32", "int8"], runtime: "onnxruntime",
               browser: true, android: true),
        Format(name: "ort", tag: "ort", suffix: ".ort", precisions: ["fp32", "int8"], runtime: "onnxruntime",
               browser: true, android: true),
        Format(name: "coreml", tag: "coreml", suffix: ".mlpackage", precisions: ["fp16", "fp32", "int8"], runtime: "coreml",
               ios: true),
        Format(name: "tflite", tag: "tflite", suffix: ".tflite", precisions: ["fp32", "fp16", "int8"], runtime: "litert",
               browser: true, android: true),
        Format(name: "executorch", tag: "xnnpack", suffix: ".pte", precisions: ["fp32", "int8"], runtime: "executorch"),
        Format(name: "qnn", tag: "qnn", suffix: ".onnx", precisions: ["w8a16", "int8"], runtime: "qnn"),
        Format(name: "pt2", tag: "pytorch", suffix: ".pt2", precisions: ["fp32"], runtime: "pytorch"),
        Format(name: "executorch-coreml", tag: "coreml-et", suffix: ".pte", precisions: ["fp16"], runtime: "executorch"),
        Format(name: "litert-npu", tag: "litert-npu", suffix: ".tflite", precisions: ["fp16", "int8"], runtime: "litert",
               android: true),
    ]

    public static func format(_ name: String) -> Format? { formats.first { Check.same($0.name, name) } }
}
