// swift-tools-version:5.9
// EMOCore: the platform-free part of the iOS demo (Foundation only): sidecar decoding, preprocessing maths on RGBA
// buffers (bit-exact with emo.preprocess), softmax/top-k, the bundled-examples reader and the benchmark result
// writer. CI builds and tests it with `swift test` on Linux (ios_demo/ci/swift_chroot.sh); the app target adds
// SwiftUI, AVFoundation and Core ML on top.
import PackageDescription

let package = Package(
    name: "EMOCore",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [.library(name: "EMOCore", targets: ["EMOCore"])],
    targets: [
        .target(name: "EMOCore"),
        .testTarget(name: "EMOCoreTests", dependencies: ["EMOCore"]),
    ]
)
