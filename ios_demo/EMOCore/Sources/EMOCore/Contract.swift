import Foundation

/// A contract file (sidecar, examples file) this core cannot use, as `emo.contract.jsonio.ContractError`: `field` is
/// the dotted path of the wrong field (`input.shape[2]`, `""` for the file as a whole) and `reason` one of `reasons`,
/// the same words in Python, Kotlin, Swift and JavaScript (the conformance vectors in `emo/contract/conformance`
/// check both, case by case); the description is one line that names the file, the field and the fix.
public struct ContractError: Error, CustomStringConvertible {
    public static let reasons = ["json", "depth", "size", "schema", "required", "type", "enum", "range", "length",
                                 "format", "mismatch"]
    public let field: String
    public let reason: String
    public let description: String

    public init(_ description: String, field: String, reason: String) {
        self.description = description; self.field = field; self.reason = reason
    }
}

/// A parsed JSON value. JSON has one number type: an integer field holds a number without a fractional part.
public enum JSONValue: Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var number: Double? { if case .number(let n) = self { return n }; return nil }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
}

/// A JSON object with its keys in document order (a repeated key keeps its first place and its last value, as
/// Python's dict).
public struct JSONObject: Equatable {
    public private(set) var keys: [String] = []
    private var values: [String: JSONValue] = [:]

    public init() {}
    public subscript(key: String) -> JSONValue? { values[key] }
    public var count: Int { keys.count }
    public var entries: [(key: String, value: JSONValue)] { keys.map { ($0, values[$0]!) } }

    mutating func set(_ key: String, _ value: JSONValue) {
        if values.updateValue(value, forKey: key) == nil { keys.append(key) }
    }
}

/// Strict, bounded JSON (RFC 8259, as Python's `json` reads it): UTF-8 only, no NaN or Infinity, no number that
/// overflows to infinity, nesting at most `maxDepth` levels. The parser keeps its own stack, so a file of a million
/// `[` is an error, never a stack overflow; it reads the same way as the Kotlin core's `BoundedJson` and Python's
/// `emo.contract.jsonio` (Foundation's JSONSerialization differs in depth limits, huge numbers and error reasons).
public enum BoundedJSON {
    public static let maxDepth = 32

    public static func parse(_ data: Data, what: String) throws -> JSONValue {
        try [UInt8](data).withUnsafeBufferPointer { bytes in
            var parser = Parser(bytes: bytes, what: what)
            return try parser.document()
        }
    }

    public static func parse(_ text: String, what: String) throws -> JSONValue { try parse(Data(text.utf8), what: what) }

    /// The bytes of a file its readers accept up to `limit` bytes (reason `size` beyond, with `fix`).
    public static func parse(_ data: Data, what: String, limit: Int, fix: String) throws -> JSONValue {
        guard data.count <= limit else {
            throw ContractError("\(what) is larger than \(limit >> 20) MiB; \(fix)", field: "", reason: "size")
        }
        return try parse(data, what: what)
    }

    struct Parser {
        let s: UnsafeBufferPointer<UInt8>
        let what: String
        var i = 0
        var depth = 0
        var deepest = 0
        var overflow = false
        var kinds: [Bool] = []            // every open container: true for an object
        var arrays: [[JSONValue]] = []    // the open arrays up to maxDepth (deeper ones are not kept)
        var objects: [JSONObject] = []    // the open objects up to maxDepth
        var keys: [String] = []           // the pending key of each open object up to maxDepth

        init(bytes: UnsafeBufferPointer<UInt8>, what: String) { self.s = bytes; self.what = what }

        func error(_ why: String) -> ContractError {
            ContractError("\(what) is not JSON: \(why) at byte \(min(i, s.count) + 1)", field: "", reason: "json")
        }

        mutating func document() throws -> JSONValue {
            if let bad = BoundedJSON.invalidUTF8(s) {
                i = bad
                throw error("the text is not UTF-8")
            }
            var value: JSONValue
            next: while true {
                skip()
                guard i < s.count else { throw error(s.isEmpty ? "the file is empty" : "the text ends early") }
                let c = s[i]
                if c == 0x7B || c == 0x5B {  // { [
                    i += 1
                    open(c == 0x7B)
                    skip()
                    let end: UInt8 = c == 0x7B ? 0x7D : 0x5D
                    if i < s.count && s[i] == end {
                        i += 1
                        value = close()
                    } else {
                        if c == 0x7B { try key() }
                        continue next
                    }
                } else {
                    value = try scalar()
                }
                // a value is complete: put it into its container and close every container that ends after it
                while true {
                    if depth == 0 {
                        skip()
                        if i < s.count { throw error("extra text after the document") }
                        if deepest > maxDepth {
                            throw ContractError("\(what) nests deeper than \(maxDepth) levels", field: "", reason: "depth")
                        }
                        if overflow {
                            throw ContractError("\(what) is not JSON: a number overflows to infinity", field: "", reason: "json")
                        }
                        return value
                    }
                    add(value)
                    skip()
                    guard i < s.count else { throw error("the text ends early") }
                    let inObject = kinds[depth - 1]
                    let d = s[i]
                    i += 1
                    if d == 0x2C {  // ,
                        if inObject { skip(); try key() }
                        continue next
                    }
                    guard d == (inObject ? 0x7D : 0x5D) else {
                        i -= 1
                        throw error("expected ',' or '\(inObject ? "}" : "]")'")
                    }
                    value = close()
                }
            }
        }

        mutating func skip() {
            while i < s.count, s[i] == 0x20 || s[i] == 0x09 || s[i] == 0x0A || s[i] == 0x0D { i += 1 }
        }

        mutating func open(_ isObject: Bool) {
            kinds.append(isObject)
            depth += 1
            deepest = max(deepest, depth)
            guard depth <= maxDepth else { return }
            if isObject { objects.append(JSONObject()); keys.append("") } else { arrays.append([]) }
        }

        mutating func close() -> JSONValue {
            let isObject = kinds.removeLast()
            defer { depth -= 1 }
            guard depth <= maxDepth else { return .null }
            if isObject {
                keys.removeLast()
                return .object(objects.removeLast())
            }
            return .array(arrays.removeLast())
        }

        mutating func add(_ value: JSONValue) {
            guard depth <= maxDepth else { return }
            if kinds[depth - 1] {
                objects[objects.count - 1].set(keys[keys.count - 1], value)
            } else {
                arrays[arrays.count - 1].append(value)
            }
        }

        mutating func key() throws {
            guard i < s.count, s[i] == 0x22 else { throw error("expected a key in double quotes") }
            let k = try string()
            skip()
            guard i < s.count, s[i] == 0x3A else { throw error("expected ':'") }
            i += 1
            if depth <= maxDepth { keys[keys.count - 1] = k }
        }

        func starts(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard i + w.count <= s.count else { return false }
            for k in 0..<w.count where s[i + k] != w[k] { return false }
            return true
        }

        mutating func scalar() throws -> JSONValue {
            let c = s[i]
            if c == 0x22 { return .string(try string()) }
            if c == 0x2D || (0x30...0x39).contains(c) { return .number(try number()) }
            if starts("true") { i += 4; return .bool(true) }
            if starts("false") { i += 5; return .bool(false) }
            if starts("null") { i += 4; return .null }
            throw error("expected a value")
        }

        mutating func digits() -> Int {
            let start = i
            while i < s.count, (0x30...0x39).contains(s[i]) { i += 1 }
            return i - start
        }

        mutating func number() throws -> Double {
            let start = i
            if s[i] == 0x2D { i += 1 }
            if i < s.count && s[i] == 0x30 { i += 1 } else if digits() == 0 { throw error("expected a digit") }
            if i < s.count && s[i] == 0x2E {
                i += 1
                if digits() == 0 { throw error("expected a digit after '.'") }
            }
            if i < s.count && (s[i] == 0x65 || s[i] == 0x45) {
                i += 1
                if i < s.count && (s[i] == 0x2B || s[i] == 0x2D) { i += 1 }
                if digits() == 0 { throw error("expected a digit in the exponent") }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: s[start..<i]), as: UTF8.self)
            // Swift's reading is correctly rounded and locale-free, as Python's float; an overflow (infinity, or nil
            // for a text the grammar above accepted) is refused after the whole text
            guard let value = Double(text), !value.isInfinite else {
                overflow = true
                return .infinity
            }
            return value
        }

        mutating func string() throws -> String {
            i += 1  // the opening quote
            let start = i
            while i < s.count {
                let c = s[i]
                if c == 0x22 {
                    i += 1
                    return String(decoding: UnsafeBufferPointer(rebasing: s[start..<(i - 1)]), as: UTF8.self)
                }
                if c == 0x5C || c < 0x20 { break }
                i += 1
            }
            var units = Array(String(decoding: UnsafeBufferPointer(rebasing: s[start..<i]), as: UTF8.self).utf16)
            while true {
                guard i < s.count else { throw error("a string is not closed") }
                let c = s[i]
                i += 1
                if c == 0x22 { return String(decoding: units, as: UTF16.self) }  // a lone surrogate becomes U+FFFD
                if c < 0x20 { i -= 1; throw error("a control character in a string") }
                if c != 0x5C {
                    // copy the UTF-8 sequence that starts here (validated up front)
                    var end = i
                    while end < s.count, s[end] & 0xC0 == 0x80 { end += 1 }
                    units.append(contentsOf: String(decoding: UnsafeBufferPointer(rebasing: s[(i - 1)..<end]), as: UTF8.self).utf16)
                    i = end
                    continue
                }
                guard i < s.count else { throw error("a string is not closed") }
                let e = s[i]
                i += 1
                switch e {
                case 0x22, 0x5C, 0x2F: units.append(UInt16(e))
                case 0x62: units.append(0x08)
                case 0x66: units.append(0x0C)
                case 0x6E: units.append(0x0A)
                case 0x72: units.append(0x0D)
                case 0x74: units.append(0x09)
                case 0x75:
                    var code: UInt16 = 0
                    for _ in 0..<4 {
                        guard i < s.count, let h = BoundedJSON.hex(s[i]) else { throw error("expected 4 hex digits after \\u") }
                        code = code * 16 + UInt16(h)
                        i += 1
                    }
                    units.append(code)
                default:
                    throw error("an invalid escape")
                }
            }
        }
    }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }

    /// The offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
    /// nothing above U+10FFFF), or nil.
    static func invalidUTF8(_ s: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = 0
        while i < s.count {
            let b = s[i]
            if b < 0x80 { i += 1; continue }
            let n: Int, low: UInt8, high: UInt8
            switch b {
            case 0xC2...0xDF: n = 1; low = 0x80; high = 0xBF
            case 0xE0: n = 2; low = 0xA0; high = 0xBF
            case 0xE1...0xEC, 0xEE...0xEF: n = 2; low = 0x80; high = 0xBF
            case 0xED: n = 2; low = 0x80; high = 0x9F
            case 0xF0: n = 3; low = 0x90; high = 0xBF
            case 0xF1...0xF3: n = 3; low = 0x80; high = 0xBF
            case 0xF4: n = 3; low = 0x80; high = 0x8F
            default: return i
            }
            guard i + n < s.count, s[i + 1] >= low, s[i + 1] <= high else { return i }
            var k = 2
            while k <= n {
                if s[i + k] & 0xC0 != 0x80 { return i }
                k += 1
            }
            i += n + 1
        }
        return nil
    }

    /// A value as an error message shows it: JSON-like, cut to 60 characters, control characters escaped.
    public static func shown(_ value: JSONValue?) -> String {
        var text: String
        switch value {
        case nil, .some(.null): text = "null"
        case .some(.bool(let b)): text = b ? "true" : "false"
        case .some(.number(let n)): text = n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .some(.string(let s)):
            text = "\""
            for u in s.unicodeScalars.prefix(60) {
                if Check.isControl(u) || u == "\"" || u == "\\" {
                    text += String(format: "\\u%04x", u.value)
                } else {
                    text.unicodeScalars.append(u)
                }
            }
            text += "\""
        case .some(.array(let a)): text = "a list of \(a.count)"
        case .some(.object): text = "an object"
        }
        guard text.unicodeScalars.count > 60 else { return text }
        var cut = ""
        cut.unicodeScalars.append(contentsOf: text.unicodeScalars.prefix(57))
        return cut + "..."
    }
}

/// The contract's checks on a parsed document, with the same field paths and reason words as the Python validator
/// (`emo.contract.schema`, JSON Schema draft 2020-12): each method checks one keyword group of the schema files
/// (`emo/contract/schemas`) and returns the typed value. JSON Schema's rules kept here: "number" excludes booleans;
/// an "integer" is a number without a fractional part (112.0 is one, 112.5 is not: reason `type`), and a range error
/// wins over the fractional part (Python reports `minimum` before `type`); string lengths count code points; a
/// `const` or `enum` refuses any other value whatever its type (reason `enum`). Strings are compared by code point
/// (Swift's `==` would take canonically equivalent strings as equal; Python does not).
struct Check {
    let what: String
    let fix: String

    func fail(_ field: String, _ reason: String, _ message: String) -> ContractError {
        ContractError("\(what): field '\(field)' \(message); \(fix)", field: field, reason: reason)
    }

    func wrong(_ field: String, _ reason: String, _ expected: String, _ value: JSONValue?) -> ContractError {
        fail(field, reason, "must be \(expected), not \(BoundedJSON.shown(value))")
    }

    func missing(_ field: String, reason: String = "required") -> ContractError {
        ContractError("\(what): field '\(field)' is missing; \(fix)", field: field, reason: reason)
    }

    static func child(_ path: String, _ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    static func same(_ a: String, _ b: String) -> Bool { a.unicodeScalars.elementsEqual(b.unicodeScalars) }

    /// The document itself: a JSON object.
    func root(_ value: JSONValue) throws -> JSONObject {
        guard case .object(let o) = value else {
            throw ContractError("\(what) must be a JSON object, not \(BoundedJSON.shown(value)); \(fix)", field: "", reason: "type")
        }
        return o
    }

    /// Every name of `required` in `object`, in the schema's order.
    func require(_ object: JSONObject, _ path: String, _ required: [String]) throws {
        for name in required where object[name] == nil { throw missing(Check.child(path, name)) }
    }

    func obj(_ field: String, _ value: JSONValue, _ expected: String = "an object") throws -> JSONObject {
        guard case .object(let o) = value else { throw wrong(field, "type", expected, value) }
        return o
    }

    /// `anyOf: [null, object]`: null, or the object.
    func objOrNull(_ field: String, _ value: JSONValue, _ expected: String) throws -> JSONObject? {
        if value == .null { return nil }
        return try obj(field, value, expected)
    }

    func array(_ field: String, _ value: JSONValue, _ minItems: Int, _ maxItems: Int, _ expected: String) throws -> [JSONValue] {
        guard case .array(let a) = value else { throw wrong(field, "type", expected, value) }
        guard a.count >= minItems && a.count <= maxItems else { throw wrong(field, "length", expected, value) }
        return a
    }

    @discardableResult
    func enumOf(_ field: String, _ value: JSONValue, _ allowed: [String], _ expected: String? = nil) throws -> String {
        guard case .string(let s) = value, allowed.contains(where: { Check.same($0, s) }) else {
            throw wrong(field, "enum", expected ?? "one of \(allowed.joined(separator: ", "))", value)
        }
        return s
    }

    @discardableResult
    func bool(_ field: String, _ value: JSONValue) throws -> Bool {
        guard case .bool(let b) = value else { throw wrong(field, "type", "a boolean", value) }
        return b
    }

    /// A number in [min, max] (`exclusiveMin`: above `min`).
    @discardableResult
    func number(_ field: String, _ value: JSONValue, _ min: Double, _ max: Double, _ expected: String,
                exclusiveMin: Bool = false) throws -> Double {
        guard case .number(let n) = value else { throw wrong(field, "type", expected, value) }
        guard (exclusiveMin ? n > min : n >= min) && n <= max else { throw wrong(field, "range", expected, value) }
        return n
    }

    /// An integer in [min, max]: a number without a fractional part (checked after the range, as Python orders it).
    @discardableResult
    func integer(_ field: String, _ value: JSONValue, _ min: Double, _ max: Double, _ expected: String) throws -> Int {
        let n = try number(field, value, min, max, expected)
        guard n == n.rounded(.down) else { throw wrong(field, "type", expected, value) }
        return Int(n)
    }

    /// A string of `minLength`...`maxLength` code points for which `pattern` holds (reason `format` otherwise).
    @discardableResult
    func string(_ field: String, _ value: JSONValue, _ minLength: Int, _ maxLength: Int, _ expected: String,
                pattern: ((String) -> Bool)? = nil) throws -> String {
        guard case .string(let s) = value else { throw wrong(field, "type", expected, value) }
        let length = s.unicodeScalars.count
        guard length >= minLength && length <= maxLength else { throw wrong(field, "length", expected, value) }
        if let pattern = pattern, !pattern(s) { throw wrong(field, "format", expected, value) }
        return s
    }

    @discardableResult
    func sha256(_ field: String, _ value: JSONValue) throws -> String {
        try string(field, value, 0, Int.max, "a sha256 (64 lowercase hex digits)") { s in
            s.utf8.count == 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }
    }

    /// C0 and DEL: what a file name or a path may not hold.
    static func isC0OrDel(_ u: Unicode.Scalar) -> Bool { u.value < 0x20 || u.value == 0x7F }

    /// C0, DEL, C1, U+2028/U+2029, the bidirectional controls and U+FEFF: what a class name may not hold
    /// (`emo.contract.text.CONTROL`).
    static func isControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029
            || u.value == 0x061C || u.value == 0x200E || u.value == 0x200F || (0x202A...0x202E).contains(u.value)
            || (0x2066...0x2069).contains(u.value) || u.value == 0xFEFF
    }

    /// The white space of Python's `str.isspace` that is not a control character (the label rule's `\s`).
    static func isBlank(_ u: Unicode.Scalar) -> Bool {
        [0x20, 0xA0, 0x1680, 0x202F, 0x205F, 0x3000].contains(u.value) || (0x2000...0x200A).contains(u.value)
    }

    /// A class name (`$defs.label`): not blank, without control characters (length checked apart).
    static func isLabel(_ s: String) -> Bool {
        !s.unicodeScalars.contains(where: isControl) && s.unicodeScalars.contains(where: { !isBlank($0) })
    }

    /// A file name without a folder (`$defs.file_name`): not "." or "..", no '/', '\\' or control character.
    static func isFileName(_ s: String) -> Bool {
        !s.isEmpty && !same(s, ".") && !same(s, "..") &&
            !s.unicodeScalars.contains(where: { $0 == "/" || $0 == "\\" || isC0OrDel($0) })
    }

    /// `s` ends with `suffix`, code point by code point.
    static func hasSuffix(_ s: String, _ suffix: String) -> Bool {
        let a = Array(s.unicodeScalars), b = Array(suffix.unicodeScalars)
        return a.count >= b.count && Array(a[(a.count - b.count)...]) == b
    }

    /// Base64 text as the schema's pattern says: the standard alphabet, then at most two '='.
    static func isBase64(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        var end = bytes.count
        while end > 0 && bytes[end - 1] == 0x3D && bytes.count - end < 2 { end -= 1 }
        for k in 0..<end {
            let c = bytes[k]
            if !((0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || (0x30...0x39).contains(c) || c == 0x2B || c == 0x2F) {
                return false
            }
        }
        return true
    }
}
