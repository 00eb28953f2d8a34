import CoreML
import EMOCore
import Foundation

/// Every `.mlpackage` bundled in the app (Xcode compiles them to `.mlmodelc`) or copied into Documents/ with its
/// sidecar is listed: adding a model is dropping its files in, never editing code.
struct StoredModel: Identifiable {
    let id: String
    let modelURL: URL
    let sidecar: Sidecar
    let examples: ExampleSet?
}

enum ModelStore {
    static func all() -> [StoredModel] {
        var urls = Bundle.main.urls(forResourcesWithExtension: "mlmodelc", subdirectory: nil) ?? []
        if let docs = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask).first,
           let items = try? FileManager.default.contentsOfDirectory(at: docs, includingPropertiesForKeys: nil) {
            urls += items.filter { $0.pathExtension == "mlpackage" || $0.pathExtension == "mlmodelc" }
        }
        return urls.compactMap { load($0) }.sorted { $0.id < $1.id }
    }

    static func load(_ url: URL) -> StoredModel? {
        let stem = url.deletingPathExtension().lastPathComponent
        let folder = url.deletingLastPathComponent()
        let sidecarURL = Bundle.main.url(forResource: stem, withExtension: "json") ?? folder.appendingPathComponent("\(stem).json")
        guard let data = try? Data(contentsOf: sidecarURL), let sidecar = try? Sidecar.parse(data, where: sidecarURL.lastPathComponent) else {
            return nil
        }
        let examplesURL = sidecar.examplesFile.map { Bundle.main.url(forResource: $0, withExtension: nil) ?? folder.appendingPathComponent($0) }
        let examples = examplesURL.flatMap { try? Data(contentsOf: $0) }.flatMap { try? ExampleSet.parse($0) }
        return StoredModel(id: stem, modelURL: url, sidecar: sidecar, examples: examples)
    }

    /// A `.mlpackage` copied in at run time must be compiled first; a bundled `.mlmodelc` is ready.
    static func compiled(_ url: URL) throws -> URL {
        url.pathExtension == "mlmodelc" ? url : try MLModel.compileModel(at: url)
    }
}
