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

/// The models the app lists: the `Models` folder of the app bundle (a folder reference, copied as it is: its
/// `.mlpackage` files are compiled by the app when opened, `CoreMLLoader`) and whatever was copied into Documents
/// (Files app, devicectl). EMOCore decides what counts and gives each a unique title.
enum ModelFolders {
    static func all() -> (scan: CatalogScan, folders: [String: URL]) {
        var folders: [String: URL] = [:]
        folders["bundle"] = Bundle.main.resourceURL?.appendingPathComponent("Models")
        folders["Documents"] = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let listed = ["bundle", "Documents"].compactMap { name in
            folders[name].map { CatalogFolder(name: name, files: (try? FileManager.default.contentsOfDirectory(atPath: $0.path)) ?? []) }
        }
        let scan = ModelCatalog.scan(listed) { folder, file in try Data(contentsOf: folders[folder.name]!.appendingPathComponent(file)) }
        return (scan, folders)
    }
}

/// The open model, shared by the photo screen and the camera screen; used on `inference` only.
final class ModelHolder: ObservableObject {
    @Published var status = "looking for models…"
    @Published var titles: [String] = []
    var opened: OpenedModel?
    private var scan = CatalogScan(models: [], skipped: [])
    private var folders: [String: URL] = [:]
    private let loader = CoreMLLoader()  // compiles each .mlpackage once

    func load() {
        inference.async {
            let found = ModelFolders.all()
            self.scan = found.scan
            self.folders = found.folders
            let text = found.scan.summary(hint: "add emo-export --format coreml output to App/Models")
            DispatchQueue.main.async {
                self.titles = found.scan.titles
                self.status = text
            }
        }
    }

    /// Opens `title` on `units` on `inference`; the session is kept only when it opened and its probe (the
    /// self-test) ran.
    func open(_ title: String, units: String) {
        status = "opening \(title) on \(units)…"
        inference.async {
            self.opened = nil
            let text: String
            do {
                guard let model = self.scan.byTitle(title), let folder = self.folders[model.entry.folder] else {
                    throw ModelContractError("no model \(title)")
                }
                let opened = try Benchmark.openAndProbe(model, path: folder.appendingPathComponent(model.entry.artifact).path,
                                                        computeUnits: units, loader: self.loader, clock: BenchmarkMode.UptimeClock())
                self.opened = opened
                text = Texts.opened(title, opened)
            } catch {
                text = "cannot open \(title) on \(units): \(Benchmark.reason(error))"
            }
            DispatchQueue.main.async { self.status = text }
        }
    }

    /// The self-test of the open model on its bundled examples, on `inference`.
    func selfTest(_ title: String?) -> String {
        guard let opened = opened, let title = title, let model = scan.byTitle(title) else { return "no model open" }
        do {
            let agreement = try model.examples.map { set in set.agreement(try set.examples.map { try opened.session.run($0.input) }) }
            return Texts.selfTest(agreement, artifact: title, ran: opened.ran)
        } catch {
            return "self-test failed: \(Benchmark.reason(error))"
        }
    }

    /// Top-5 of upright RGBA pixels, on `inference`.
    func classify(_ rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int? = nil) -> String {
        guard let opened = opened else { return "no model open" }
        do {
            let sidecar = opened.session.sidecar
            let input = Preprocessor(sidecar: sidecar).tensor(rgba: rgba, width: width, height: height, bytesPerRow: bytesPerRow)
            let start = DispatchTime.now().uptimeNanoseconds
            let output = try opened.session.run(input)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            return try Texts.predictions(Classify.predictions(output, sidecar: sidecar), millis: ms, ran: opened.ran)
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
    @State private var units = BenchmarkRequest.defaultComputeUnits
    @State private var report = ""
    @State private var photo: PhotosPickerItem?

    var body: some View {
        Form {
            Picker("Model", selection: $selected) {
                ForEach(holder.titles, id: \.self) { Text($0).tag(Optional($0)) }  // titles are unique (EMOCore)
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
        .onChange(of: holder.titles) { titles in if selected == nil { selected = titles.first } }
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
        let title = selected
        report = "self-test…"
        inference.async {
            let text = holder.selfTest(title)
            DispatchQueue.main.async { report = text }
        }
    }
}
