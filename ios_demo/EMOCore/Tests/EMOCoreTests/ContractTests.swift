import Foundation
import XCTest
@testable import EMOCore

/// The Swift readers against the artifact contract's own files, copied by tests/test_ios_core.py under
/// `$EMO_TESTDATA/contract` (`emo/contract`: `conformance/`, `vocabulary.json`): every conformance case of
/// `conformance/{sidecar,examples}/cases.json` (a valid file parses to the values Python reads; a bad one fails with
/// exactly the case's field and reason), the vocabulary, and the parity policy and limits. `$EMO_TESTDATA/conformance`
/// holds what tests/conformance_data.py wrote: Python's readings of the valid cases, its policy, and mutants of the
/// valid cases with Python's verdict on each. A case added to a cases.json is checked here with no change to this file.
final class ContractTests: XCTestCase {
    struct Missing: Error, CustomStringConvertible { let description: String }

    func dataRoot() throws -> URL {
        guard let path = ProcessInfo.processInfo.environment["EMO_TESTDATA"] else {
            throw Missing(description: "EMO_TESTDATA=DIR is required (tests/test_ios_core.py sets it)")
        }
        return URL(fileURLWithPath: path)
    }

    func contract() throws -> URL { try dataRoot().appendingPathComponent("contract") }
    func data() throws -> URL { try dataRoot().appendingPathComponent("conformance") }

    /// Test metadata (cases.json, readings, policy), read with Foundation's parser, not the one under test.
    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any], url.path)
    }

    /// Checks every case of one kind in `root` (a conformance folder) against the reader, and each valid one's values
    /// against Python's `readings`; fails with every disagreement.
    func conformance(_ root: URL, _ readings: [String: Any], _ kind: String, read: (Data, String) throws -> Any,
                     same: (Any, [String: Any]) throws -> Void) throws {
        let folder = root.appendingPathComponent(kind)
        let cases = try XCTUnwrap(json(folder.appendingPathComponent("cases.json"))["cases"] as? [[String: Any]])
        let wanted = try XCTUnwrap(readings[kind] as? [String: Any])
        var problems: [String] = []
        for c in cases {
            let name = c["file"] as! String
            let valid = c["valid"] as! Bool
            let field = c["field"] as? String ?? "", reason = c["reason"] as? String ?? ""
            let bytes = try Data(contentsOf: folder.appendingPathComponent(name))
            do {
                let parsed = try read(bytes, name)
                guard valid else { problems.append("\(name): accepted, expected '\(field)' / \(reason)"); continue }
                do {
                    try same(parsed, try XCTUnwrap(wanted[name] as? [String: Any]))
                } catch {
                    problems.append("\(name): read differently from Python: \(error)")
                }
            } catch let e as ContractError {
                let got = "'\(e.field)' / \(e.reason)"
                if valid {
                    problems.append("\(name): refused (\(got): \(e)), expected valid")
                } else if e.field != field || e.reason != reason {
                    problems.append("\(name): \(got), expected '\(field)' / \(reason): \(e)")
                } else if e.description.contains("\n") || (!e.field.isEmpty && !e.description.contains("'\(e.field)'")) {
                    problems.append("\(name): the message is not one line naming the field: \(e)")
                }
            } catch {
                problems.append("\(name): \(type(of: error)) instead of a ContractError: \(error)")
            }
        }
        XCTAssertTrue(problems.isEmpty, "\(problems.count) of \(cases.count) \(kind) cases in \(root.path) disagree:\n" +
                      problems.joined(separator: "\n"))
        if problems.isEmpty { print("conformance: \(kind) \(cases.count) cases of \(root.path) agree") }
    }

    struct Mismatch: Error, CustomStringConvertible { let description: String }

    func expect<T: Equatable>(_ what: String, _ want: T?, _ got: T) throws {
        guard want == got else { throw Mismatch(description: "\(what): Python \(String(describing: want)), Swift \(got)") }
    }

    func readSidecar(_ data: Data, _ name: String) throws -> Any { try Sidecar.parse(data, where: name) }
    func readExamples(_ data: Data, _ name: String) throws -> Any { try ExampleSet.parse(data, where: name) }

    func sameSidecar(_ parsed: Any, _ want: [String: Any]) throws {
        let s = parsed as! Sidecar
        try expect("variant", want["variant"] as? String, s.variant)
        try expect("backend", want["backend"] as? String, s.backend)
        try expect("precision", want["precision"] as? String, s.precision)
        try expect("file", want["file"] as? String, s.file)
        try expect("sha256", want["sha256"] as? String, s.sha256)
        try expect("size_bytes", want["size_bytes"] as? Int, s.sizeBytes)
        try expect("input name", want["input_name"] as? String, s.inputName)
        try expect("layout", want["layout"] as? String, s.layout)
        try expect("batch", want["batch"] as? Int, s.batch)
        try expect("height", want["height"] as? Int, s.height)
        try expect("width", want["width"] as? Int, s.width)
        try expect("mean", (want["mean"] as? [Double])?.map { Float($0) }, s.normalization.mean)
        try expect("std", (want["std"] as? [Double])?.map { Float($0) }, s.normalization.std)
        try expect("in_graph", want["in_graph"] as? Bool, s.normalization.inGraph)
        try expect("crop_pct", want["crop_pct"] as? Double, s.preprocessing.cropPct)
        try expect("interpolation", want["interpolation"] as? String, s.preprocessing.interpolation)
        try expect("output name", want["output_name"] as? String, s.outputName)
        try expect("output kind", want["output_kind"] as? String, s.outputKind)
        try expect("num_classes", want["num_classes"] as? Int, s.numClasses)
        try expect("labels", want["labels"] as? [String], s.labels)
        try expect("examples", want["examples"] as? String, s.examplesFile)
        let io = want["io"] as? [String: Any]
        for (end, spec) in [("input", s.inputSpec), ("output", s.outputSpec)] {
            let wantSpec = io?[end] as? [String: Any]
            try expect("\(end) dtype", wantSpec?["dtype"] as? String ?? "float32", spec.dtype)
            if let w = wantSpec, spec.quantized {
                try expect("\(end) scale", (w["scale"] as? Double).map { Float($0) }, spec.scale)
                try expect("\(end) zero point", w["zero_point"] as? Int, spec.zeroPoint)
            }
        }
        let labelOf = want["label_of"] as? [String] ?? []  // classes 0, N - 1, N and -1: names or "class N"
        try expect("label fallback", labelOf, [0, s.numClasses - 1, s.numClasses, -1].map { s.label($0) })
    }

    /// [[name, number], ...] in order.
    func pairs(_ value: Any?) -> [String] {
        ((value as? [[Any]]) ?? []).map { "\($0[0])=\(($0[1] as? Double) ?? .nan)" }
    }

    func sameExamples(_ parsed: Any, _ want: [String: Any]) throws {
        let set = parsed as! ExampleSet
        try expect("artifact", want["artifact"] as? String, set.artifact)
        try expect("precision", want["precision"] as? String, set.precision)
        try expect("tolerance", pairs(want["tolerance"]), set.toleranceOrder.map { "\($0)=\(set.tolerance[$0]!)" })
        let examples = want["examples"] as? [[String: Any]] ?? []
        try expect("examples", examples.count, set.examples.count)
        for (w, e) in zip(examples, set.examples) {
            try expect("source", w["source"] as? String, e.source)
            try expect("input shape", w["input_shape"] as? [Int], e.inputShape)
            try expect("top5", w["top5"] as? [Int], e.top5)
            for (key, values) in [("input", e.input), ("output", e.output)] {
                try expect("\(key) size", w["\(key)_size"] as? Int, values.count)
                var sum = 0.0
                for v in values { sum += Double(v) }  // in index order, as numpy's cumsum
                try expect("\(key) sum", (w["\(key)_sum"] as? String).flatMap { Double($0) }, sum)
                try expect("\(key) last", (w["\(key)_last"] as? String).flatMap { Float($0) }, values.last!)
            }
        }
    }

    func testSidecarConformance() throws {
        try conformance(try contract().appendingPathComponent("conformance"), try json(try data().appendingPathComponent("readings.json")),
                        "sidecar", read: readSidecar, same: sameSidecar)
    }

    func testExamplesConformance() throws {
        try conformance(try contract().appendingPathComponent("conformance"), try json(try data().appendingPathComponent("readings.json")),
                        "examples", read: readExamples, same: sameExamples)
    }

    /// Mutants of the valid cases (tests/conformance_data.py: one to three defects each) judged by Python.
    func testMutantsAgreeWithPython() throws {
        let fuzz = try data().appendingPathComponent("fuzz")
        let readings = try json(fuzz.appendingPathComponent("readings.json"))
        try conformance(fuzz.appendingPathComponent("conformance"), readings, "sidecar", read: readSidecar, same: sameSidecar)
        try conformance(fuzz.appendingPathComponent("conformance"), readings, "examples", read: readExamples, same: sameExamples)
    }

    func testVocabularyIsTheContracts() throws {
        let vocabulary = try json(try contract().appendingPathComponent("vocabulary.json"))
        let tables: [String: [String]] = [
            "precisions": Vocabulary.precisions, "quantized": Vocabulary.quantized, "layouts": Vocabulary.layouts,
            "output_kinds": Vocabulary.outputKinds, "variants": Vocabulary.variants,
            "interpolations": Vocabulary.interpolations, "bench_targets": Vocabulary.benchTargets]
        for (key, ours) in tables { XCTAssertEqual(vocabulary[key] as? [String], ours, key) }
        XCTAssertEqual(vocabulary["sidecar_suffix"] as? String, Vocabulary.sidecarSuffix)
        XCTAssertEqual(vocabulary["examples_suffix"] as? String, Vocabulary.examplesSuffix)
        XCTAssertEqual(Set(vocabulary.keys), Set(tables.keys).union(["formats", "sidecar_suffix", "examples_suffix"]),
                       "vocabulary.json has entries this core does not know")
        let formats = try XCTUnwrap(vocabulary["formats"] as? [[String: Any]])
        XCTAssertEqual(formats.count, Vocabulary.formats.count)
        for (f, ours) in zip(formats, Vocabulary.formats) {
            XCTAssertEqual(Set(f.keys), ["name", "tag", "suffix", "precisions", "runtime", "browser", "android", "ios"])
            XCTAssertEqual(f["name"] as? String, ours.name)
            XCTAssertEqual(f["tag"] as? String, ours.tag)
            XCTAssertEqual(f["suffix"] as? String, ours.suffix)
            XCTAssertEqual(f["precisions"] as? [String], ours.precisions)
            XCTAssertEqual(f["runtime"] as? String, ours.runtime)
            XCTAssertEqual(f["browser"] as? Bool, ours.browser, ours.name)
            XCTAssertEqual(f["android"] as? Bool, ours.android, ours.name)
            XCTAssertEqual(f["ios"] as? Bool, ours.ios, ours.name)
        }
        // what the app runs follows the table: the formats marked "ios", then Xcode's compiled form
        XCTAssertEqual(ModelCatalog.suffixes, Vocabulary.formats.filter { $0.ios }.map { $0.suffix } + [".mlmodelc"])
    }

    func testParityPolicyAndLimitsArePythons() throws {
        let policy = try json(try data().appendingPathComponent("policy.json"))
        let tolerances = try XCTUnwrap(policy["tolerances"] as? [[Any]])
        XCTAssertEqual(tolerances.map { $0[0] as? String ?? "" }, ExampleSet.tolerances.map { $0.precision })
        for (theirs, ours) in zip(tolerances, ExampleSet.tolerances) {
            XCTAssertEqual(pairs(theirs[1]), ours.bounds.map { "\($0.name)=\($0.bound)" }, ours.precision)
        }
        XCTAssertEqual(policy["upper_bounds"] as? [String], ExampleSet.upperBounds)
        XCTAssertEqual((policy["tolerance_names"] as? [String])?.sorted(), ExampleSet.toleranceNames.sorted())
        XCTAssertEqual(policy["quantized_dtypes"] as? [String], TensorSpec.dtypes)
        XCTAssertEqual(policy["sidecar_schema"] as? String, Sidecar.schema)
        XCTAssertEqual(policy["examples_schema"] as? String, ExampleSet.schema)
        XCTAssertEqual(policy["max_sidecar_bytes"] as? Int, Sidecar.maxBytes)
        XCTAssertEqual(policy["max_examples_bytes"] as? Int, ExampleSet.maxBytes)
        XCTAssertEqual(policy["max_input_elements"] as? Int, Sidecar.maxInputElements)
        XCTAssertEqual(policy["max_tensor_elements"] as? Int, ExampleSet.maxTensorElements)
        XCTAssertEqual(policy["crop_pct"] as? Double, Preprocessing.defaultCropPct)
        XCTAssertEqual(policy["max_depth"] as? Int, BoundedJSON.maxDepth)
        XCTAssertEqual(policy["reasons"] as? [String], ContractError.reasons)
    }

    func refused(_ text: String) -> String? {
        do {
            _ = try BoundedJSON.parse(text, what: "x")
            return nil
        } catch let e as ContractError {
            return e.reason
        } catch {
            return "\(error)"
        }
    }

    /// As tests/test_contract.py's test_bounded_json, and what lenient parsers would let through.
    func testBoundedJSONIsStrictAndNeverOverflowsTheStack() throws {
        XCTAssertEqual(refused(String(repeating: "[", count: 1_000_000) + String(repeating: "]", count: 1_000_000)), "depth")
        XCTAssertEqual(refused(String(repeating: "{\"a\": ", count: 40) + "1" + String(repeating: "}", count: 40)), "depth")
        XCTAssertNil(refused(String(repeating: "[", count: 32) + String(repeating: "]", count: 32)))  // 32 levels: allowed
        XCTAssertEqual(refused(String(repeating: "[", count: 33) + String(repeating: "]", count: 33)), "depth")
        XCTAssertEqual(refused(String(repeating: "[", count: 40) + String(repeating: "]", count: 39)), "json")  // not JSON first
        let big = try BoundedJSON.parse("{\"n\": " + String(repeating: "9", count: 40) + "}", what: "x")
        XCTAssertEqual(big.object?["n"], .number(Double(String(repeating: "9", count: 40))!))
        XCTAssertEqual(try BoundedJSON.parse("[1e-400, -0, 5e-324]", what: "x"), .array([.number(0), .number(0), .number(5e-324)]))
        for text in ["{\"n\": " + String(repeating: "9", count: 5000) + "}", "{\"n\": NaN}", "{\"n\": -Infinity}",
                     "{\"n\": 1e400}", "{\"a\": 1 // comment\n}", "{'a': 1}", "{\"a\": hello}", "{\"a\": 0x10}",
                     "{\"a\": 010}", "[1, 2,]", "{\"a\": 1,}", "{\"a\" = 1}", "{\"a\": 1; \"b\": 2}", "\u{feff}{}",
                     "{\"a\": \"tab\there\"}", "{\"a\": True}", "{\"a\": \"\\x41\"}", "{\"a\": 1.}", "{\"a\": .5}",
                     "{\"a\": +1}", "{\"a\": -}", "{} {}", "", " ", "\""] {
            XCTAssertEqual(refused(text), "json", String(text.prefix(40)))
        }
        // larger than its readers accept: refused before it is parsed
        XCTAssertThrowsError(try Sidecar.parse(Data(repeating: 0x20, count: Sidecar.maxBytes + 1), where: "huge.json")) {
            XCTAssertEqual(($0 as? ContractError)?.reason, "size")
        }
        var bytes = [UInt8]("{\"n\": \"\u{e9}\"}".utf8)
        bytes[bytes.count - 3] = 0xFF  // the second byte of é
        XCTAssertThrowsError(try BoundedJSON.parse(Data(bytes), what: "x")) { XCTAssertEqual(($0 as? ContractError)?.reason, "json") }
        for invalid: [UInt8] in [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] {
            XCTAssertThrowsError(try BoundedJSON.parse(Data([0x22] + invalid + [0x22]), what: "x"), "\(invalid)")
        }
        let doc = try BoundedJSON.parse(" {\"b\": 1, \"a\": [true, null, \"\\u00e9\\ud83d\\ude00\\n\"], \"b\": 2.5e0}\r\n", what: "x")
        let object = try XCTUnwrap(doc.object)
        XCTAssertEqual(object.keys, ["b", "a"])  // a repeated key keeps its place and its last value
        XCTAssertEqual(object["b"], .number(2.5))
        XCTAssertEqual(object["a"], .array([.bool(true), .null, .string("\u{e9}\u{1F600}\n")]))
        // a lone surrogate (Python keeps it) cannot be in a Swift String: it reads as U+FFFD, alike for every rule
        XCTAssertEqual(try BoundedJSON.parse("[\"\\ud800x\"]", what: "x"), .array([.string("\u{FFFD}x")]))
    }

    func testTheReaderUsesTheSidecarsCropFractionAndClassFallback() throws {
        let url = try contract().appendingPathComponent("conformance/sidecar/good/fixture_onnx_fp32.json")
        var good = try json(url)
        var input = good["input"] as! [String: Any]
        var pre = input["preprocessing"] as! [String: Any]
        pre["crop_pct"] = 1.0
        input["preprocessing"] = pre
        good["input"] = input
        let whole = try Sidecar.parse(JSONSerialization.data(withJSONObject: good), where: "crop1.json")
        XCTAssertEqual(whole.preprocessing.cropPct, 1.0)
        input.removeValue(forKey: "preprocessing")
        good["input"] = input
        let older = try Sidecar.parse(JSONSerialization.data(withJSONObject: good), where: "older.json")
        XCTAssertEqual(older.preprocessing.cropPct, 0.875)
        // a 112 x 112 photo: crop 1.0 keeps it as it is; 0.875 resizes it to 128 first, then crops the centre
        var rgba = [UInt8](repeating: 255, count: 112 * 112 * 4)
        var rgb: [UInt8] = []
        for p in 0..<(112 * 112) {
            for c in 0..<3 {
                rgba[p * 4 + c] = UInt8((p * 37 + c * 101 + p / 7) % 256)
                rgb.append(rgba[p * 4 + c])
            }
        }
        XCTAssertEqual(Preprocessor(sidecar: whole).crop(rgba: rgba, width: 112, height: 112), rgb)
        XCTAssertNotEqual(Preprocessor(sidecar: older).crop(rgba: rgba, width: 112, height: 112), rgb)
        XCTAssertTrue(Preprocessor.resizedSize(width: 112, height: 224, outH: 112, outW: 112, cropPct: 0.875) == (128, 256))
        XCTAssertTrue(Preprocessor.resizedSize(width: 112, height: 224, outH: 112, outW: 112, cropPct: 1.0) == (112, 224))
        good.removeValue(forKey: "labels")
        let unlabelled = try Sidecar.parse(JSONSerialization.data(withJSONObject: good), where: "nolabels.json")
        XCTAssertEqual(unlabelled.label(7), "class 7")
        XCTAssertEqual(older.label(10), "class 10")
        XCTAssertEqual(older.label(0), "0_t-shirt_top")
    }

    /// Kotlin's output-size check, here too: a model that returns another number of scores than the sidecar says is
    /// an error, not a top-5 of the wrong classes; examples of another size are refused when the model is opened.
    func testOutputAndExamplesSizesAreChecked() throws {
        let folder = try contract().appendingPathComponent("conformance")
        let side = try Data(contentsOf: folder.appendingPathComponent("sidecar/good/fixture_onnx_fp32.json"))
        let sidecar = try Sidecar.parse(side, where: "m.json")
        XCTAssertThrowsError(try Classify.predictions([Float](repeating: 0, count: 12), sidecar: sidecar)) {
            XCTAssertEqual(String(describing: $0), "the model returned 12 scores, the sidecar says 10; re-export the artifact")
        }
        XCTAssertEqual(try Classify.predictions([Float](repeating: 0, count: 10), sidecar: sidecar).count, 5)
        let examples = try Data(contentsOf: folder.appendingPathComponent("examples/good/fp32_u8_inputs.json"))
        let files = ["m.json": side, "m.examples.json": examples]
        XCTAssertThrowsError(try ModelCatalog.open(CatalogEntry(artifact: "m.onnx", sidecar: "m.json", examples: "m.examples.json"),
                                                   names: ["m.onnx", "m.json", "m.examples.json"], read: { files[$0]! })) {
            XCTAssertTrue(String(describing: $0).hasPrefix("m.examples.json holds inputs of "), String(describing: $0))
        }
    }
}
