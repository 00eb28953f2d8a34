import EMOCore
import PhotosUI
import SwiftUI

@main
struct EMODemoApp: App {
    private let headless = BenchmarkMode.runIfRequested()
    var body: some Scene {
        WindowGroup {
            if headless {
                Text("benchmarking…")
            } else {
                NavigationStack { ContentView() }  // NavigationLink navigates only inside a NavigationStack
            }
        }
    }
}

/// Every model call (open, classify, self-test) runs on this one queue: a session is never used by two threads, and
/// the main thread only shows text.
let inference = DispatchQueue(label: "emo-inference", qos: .userInitiated)

/// The models the app lists: compiled `.mlmodelc` bundles (Xcode compiles `Models/*.mlpackage`) beside their sidecars
/// in the app bundle, and whatever was copied into Documents (Files app, devicectl). EMOCore decides what counts.
enum ModelFolders {
    static func all() -> (models: [(CatalogModel, URL)], skipped: [String]) {
        var models: [(CatalogModel, URL)] = [], skipped: [String] = []
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let bundled = Bundle.main.resourceURL?.appendingPathComponent("Models")  // the Models folder, copied as is
        for folder in [bundled, documents].compactMap({ $0 }) {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            let listing = ModelCatalog.discover(names)
            skipped += listing.skipped
            for entry in listing.entries {
                do {
                    let model = try ModelCatalog.open(entry, names: names) { try Data(contentsOf: folder.appendingPathComponent($0)) }
                    models.append((model, folder.appendingPathComponent(entry.artifact)))
                } catch {
                    skipped.append("\(entry.artifact): \(Benchmark.reason(error))")
                }
            }
        }
        return (models, skipped)
    }
}

/// The open model, shared by the photo screen and the camera screen; used on `inference` only.
final class ModelHolder: ObservableObject {
    @Published var status = "looking for models…"
    @Published var names: [String] = []
    var session: ModelSession?
    var ran = ""
    private var models: [String: (CatalogModel, URL)] = [:]

    func load() {
        inference.async {
            let found = ModelFolders.all()
            let head = found.models.isEmpty ? ["no models: add emo-export --format coreml output to App/Models"] : []
            DispatchQueue.main.async {
                self.models = Dictionary(found.models.map { ($0.0.entry.artifact, $0) }, uniquingKeysWith: { a, _ in a })
                self.names = found.models.map { $0.0.entry.artifact }
                self.status = (head + found.skipped).joined(separator: "\n")
            }
        }
    }

    func open(_ name: String, units: String) {
        guard let found = models[name] else { return }
        let (model, url) = found
        status = "opening \(name) on \(units)…"
        inference.async {
            self.session = nil
            let text: String
            do {
                let plan = try ComputeUnits.plan(path: url.path, sidecar: model.sidecar, computeUnits: units)
                let session = try ModelSession(sidecar: model.sidecar, engine: try CoreMLLoader().load(plan))
                _ = try session.run([Float](repeating: 0, count: model.sidecar.inputSize))  // then ask what ran
                self.ran = AcceleratorReport.coreML(computeUnits: units, report: session.engine.report()).summary()
                self.session = session
                text = "\(name) on \(self.ran)"
            } catch {
                text = "cannot open \(name) on \(units): \(Benchmark.reason(error))"
            }
            DispatchQueue.main.async { self.status = text }
        }
    }

    func examples(_ name: String?) -> ExampleSet? { name.flatMap { models[$0]?.0.examples } }

    /// Top-5 of upright RGBA pixels, on `inference`.
    func classify(_ rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int? = nil) -> String {
        guard let session = session else { return "no model open" }
        do {
            let input = Preprocessor(sidecar: session.sidecar).tensor(rgba: rgba, width: width, height: height, bytesPerRow: bytesPerRow)
            let start = DispatchTime.now().uptimeNanoseconds
            let output = try session.run(input)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            return try Texts.predictions(Classify.predictions(output, sidecar: session.sidecar), millis: ms, ran: ran)
        } catch {
            return "prediction failed: \(Benchmark.reason(error))"
        }
    }
}

/// Model and compute-unit pickers, a photo picker, the camera screen, top-5 with latency and what ran, and the
/// self-test on the bundled examples. All decisions are EMOCore's.
struct ContentView: View {
    @StateObject private var holder = ModelHolder()
    @State private var selected: String?
    @State private var units = "ALL"
    @State private var report = ""
    @State private var photo: PhotosPickerItem?

    var body: some View {
        Form {
            Picker("Model", selection: $selected) {
                ForEach(holder.names, id: \.self) { Text($0).tag(Optional($0)) }
            }
            Picker("Compute units", selection: $units) {
                ForEach(ComputeUnits.names, id: \.self) { Text($0).tag($0) }
            }
            Text(holder.status).font(.footnote)
            PhotosPicker("Classify a photo", selection: $photo, matching: .images)
            NavigationLink("Camera") { CameraView(holder: holder) }
            Button("Self-test") { selfTest() }
            Text(report).font(.system(.footnote, design: .monospaced))
        }
        .navigationTitle("EMO")
        .onAppear { holder.load() }
        .onChange(of: holder.names) { names in if selected == nil { selected = names.first } }
        .onChange(of: selected) { name in if let name = name { holder.open(name, units: units) } }
        .onChange(of: units) { units in if let name = selected { holder.open(name, units: units) } }
        .onChange(of: photo) { item in
            guard let item = item else { return }
            report = "classifying…"
            let holder = holder  // the object itself, not the view's StateObject storage, goes to other threads
            Task {
                let data = try? await item.loadTransferable(type: Data.self)
                inference.async {
                    let text: String
                    if let data = data, let pixels = Pixels.rgba(data) {
                        text = holder.classify(pixels.bytes, width: pixels.width, height: pixels.height)
                    } else {
                        text = "could not read the photo"
                    }
                    DispatchQueue.main.async { report = text }
                }
            }
        }
    }

    private func selfTest() {
        let holder = holder  // the object itself, not the view's StateObject storage, goes to other threads
        let examples = holder.examples(selected)
        let name = selected ?? "?"
        report = "self-test…"
        inference.async {
            let text: String
            if let session = holder.session {
                do {
                    let agreement = try examples.map { set in set.agreement(try set.examples.map { try session.run($0.input) }) }
                    text = Texts.selfTest(agreement, artifact: name, ran: holder.ran)
                } catch {
                    text = "self-test failed: \(Benchmark.reason(error))"
                }
            } else {
                text = "no model open"
            }
            DispatchQueue.main.async { report = text }
        }
    }
}
