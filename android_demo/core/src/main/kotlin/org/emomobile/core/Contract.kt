package org.emomobile.core

import java.nio.ByteBuffer
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction

/**
 * A contract file (sidecar, examples file) this core cannot use, as `emo.contract.jsonio.ContractError`: [field] is
 * the dotted path of the wrong field (`input.shape[2]`, `""` for the file as a whole) and [reason] one of [REASONS],
 * the same words in Python, Kotlin, Swift and JavaScript (the conformance vectors in `emo/contract/conformance`
 * check both, case by case); the message is one line that names the file, the field and the fix.
 */
class ContractException(message: String, val field: String, val reason: String) : ModelContractException(message) {
    companion object {
        val REASONS = listOf("json", "depth", "size", "schema", "required", "type", "enum", "range", "length", "format",
            "mismatch")
    }
}

/**
 * Strict, bounded JSON (RFC 8259, as Python's `json` reads it): no NaN or Infinity, no number that overflows to
 * infinity, no comments, single quotes or unquoted words (Android's org.json accepts all of those), nesting at most
 * [MAX_DEPTH] levels, UTF-8 only. The parser keeps its own stack, so a file of a million `[` is an error, never a
 * `StackOverflowError`.
 *
 * Values: `Map<String, Any?>` (keys in document order; a repeated key keeps its first place and its last value, as
 * Python's dict), `List<Any?>`, `String`, `Double` (JSON has one number type: an integer field holds a number without
 * a fractional part), `Boolean` and `null`.
 */
object BoundedJson {
    const val MAX_DEPTH = 32

    /** [bytes] as UTF-8 JSON text; [what] names the file in errors ("sidecar m.json"). */
    fun parse(bytes: ByteArray, what: String): Any? {
        val decoder = Charsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT)
        val text = try {
            decoder.decode(ByteBuffer.wrap(bytes)).toString()
        } catch (e: CharacterCodingException) {
            throw ContractException("$what is not JSON: the text is not UTF-8", "", "json")
        }
        return parse(text, what)
    }

    fun parse(text: String, what: String): Any? = Parser(text, what).document()

    /** The bytes of a file its readers accept up to [limit] bytes (reason `size` beyond, with [fix]). */
    fun parse(bytes: ByteArray, what: String, limit: Int, fix: String): Any? {
        if (bytes.size > limit) throw ContractException("$what is larger than ${limit shr 20} MiB; $fix", "", "size")
        return parse(bytes, what)
    }

    private class Parser(private val s: String, private val what: String) {
        private val n = s.length
        private var i = 0
        private var depth = 0
        private var deepest = 0
        private var overflow = false
        private var kinds = BooleanArray(64)               // every open container: true for an object
        private val containers = ArrayList<Any>()          // the open containers up to MAX_DEPTH (deeper: not kept)
        private val keys = ArrayList<String?>()

        private fun error(why: String) =
            ContractException("$what is not JSON: $why at character ${Math.min(i, n) + 1}", "", "json")

        fun document(): Any? {
            var value: Any?
            next@ while (true) {
                skip()
                if (i >= n) throw error(if (n == 0) "the file is empty" else "the text ends early")
                val c = s[i]
                if (c == '{' || c == '[') {
                    i++
                    open(c == '{')
                    skip()
                    val end = if (c == '{') '}' else ']'
                    if (i < n && s[i] == end) {
                        i++
                        value = close()
                    } else {
                        if (c == '{') key()
                        continue@next
                    }
                } else {
                    value = scalar()
                }
                // a value is complete: put it into its container and close every container that ends after it
                while (true) {
                    if (depth == 0) {
                        skip()
                        if (i < n) throw error("extra text after the document")
                        if (deepest > MAX_DEPTH) {
                            throw ContractException("$what nests deeper than $MAX_DEPTH levels", "", "depth")
                        }
                        if (overflow) throw ContractException("$what is not JSON: a number overflows to infinity", "", "json")
                        return value
                    }
                    add(value)
                    skip()
                    if (i >= n) throw error("the text ends early")
                    val inObject = kinds[depth - 1]
                    val d = s[i++]
                    if (d == ',') {
                        if (inObject) {
                            skip()
                            key()
                        }
                        continue@next
                    }
                    if (d != (if (inObject) '}' else ']')) {
                        i--
                        throw error("expected ',' or '${if (inObject) '}' else ']'}'")
                    }
                    value = close()
                }
            }
        }

        private fun skip() {
            while (i < n) {
                val c = s[i]
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return
                i++
            }
        }

        private fun open(isObject: Boolean) {
            if (depth == kinds.size) kinds = kinds.copyOf(depth * 2)
            kinds[depth++] = isObject
            if (depth > deepest) deepest = depth
            if (depth <= MAX_DEPTH) {
                containers.add(if (isObject) LinkedHashMap<String, Any?>() else ArrayList<Any?>())
                keys.add(null)
            }
        }

        private fun close(): Any? {
            val value = if (depth <= MAX_DEPTH) {
                keys.removeAt(keys.size - 1)
                containers.removeAt(containers.size - 1)
            } else {
                null
            }
            depth--
            return value
        }

        @Suppress("UNCHECKED_CAST")
        private fun add(value: Any?) {
            if (depth > MAX_DEPTH) return
            val top = containers[containers.size - 1]
            if (top is LinkedHashMap<*, *>) (top as LinkedHashMap<String, Any?>)[keys[keys.size - 1]!!] = value
            else (top as ArrayList<Any?>).add(value)
        }

        private fun key() {
            if (i >= n || s[i] != '"') throw error("expected a key in double quotes")
            val k = string()
            skip()
            if (i >= n || s[i] != ':') throw error("expected ':'")
            i++
            if (depth <= MAX_DEPTH) keys[keys.size - 1] = k
        }

        private fun scalar(): Any? {
            val c = s[i]
            return when {
                c == '"' -> string()
                c == '-' || (c in '0'..'9') -> number()
                s.startsWith("true", i) -> { i += 4; true }
                s.startsWith("false", i) -> { i += 5; false }
                s.startsWith("null", i) -> { i += 4; null }
                else -> throw error("expected a value")
            }
        }

        private fun digits(): Int {
            val start = i
            while (i < n && s[i] in '0'..'9') i++
            return i - start
        }

        private fun number(): Double {
            val start = i
            if (s[i] == '-') i++
            if (i < n && s[i] == '0') i++ else if (digits() == 0) throw error("expected a digit")
            if (i < n && s[i] == '.') {
                i++
                if (digits() == 0) throw error("expected a digit after '.'")
            }
            if (i < n && (s[i] == 'e' || s[i] == 'E')) {
                i++
                if (i < n && (s[i] == '+' || s[i] == '-')) i++
                if (digits() == 0) throw error("expected a digit in the exponent")
            }
            val value = s.substring(start, i).toDouble()
            if (value.isInfinite()) overflow = true  // refused after the whole text parsed (as Python orders it)
            return value
        }

        private fun string(): String {
            i++  // the opening quote
            val start = i
            while (i < n) {
                val c = s[i]
                if (c == '"') {
                    i++
                    return s.substring(start, i - 1)
                }
                if (c == '\\' || c < ' ') break
                i++
            }
            val out = StringBuilder().append(s, start, i)
            while (true) {
                if (i >= n) throw error("a string is not closed")
                val c = s[i++]
                when {
                    c == '"' -> return out.toString()
                    c < ' ' -> {
                        i--
                        throw error("a control character in a string")
                    }
                    c != '\\' -> out.append(c)
                    else -> {
                        if (i >= n) throw error("a string is not closed")
                        when (val e = s[i++]) {
                            '"', '\\', '/' -> out.append(e)
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000c')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'u' -> {
                                var code = 0
                                for (k in 0 until 4) {
                                    val h = if (i < n) hex(s[i]) else -1
                                    if (h < 0) throw error("expected 4 hex digits after \\u")
                                    code = code * 16 + h
                                    i++
                                }
                                out.append(code.toChar())
                            }
                            else -> throw error("an invalid escape \\$e")
                        }
                    }
                }
            }
        }

        private fun hex(c: Char): Int = when (c) {
            in '0'..'9' -> c - '0'
            in 'a'..'f' -> c - 'a' + 10
            in 'A'..'F' -> c - 'A' + 10
            else -> -1
        }
    }

    /** A value as an error message shows it: JSON-like, cut to 60 characters, control characters escaped. */
    fun shown(value: Any?): String {
        val text = StringBuilder()
        when (value) {
            null -> text.append("null")
            is String -> {
                text.append('"')
                for (c in value.take(60)) {
                    if (c < ' ' || c in '\u007f'..'\u009f' || c == '\u2028' || c == '\u2029' || c == '"' || c == '\\') {
                        text.append(String.format(java.util.Locale.ROOT, "\\u%04x", Check.code(c)))
                    } else {
                        text.append(c)
                    }
                }
                text.append('"')
            }
            is Double -> text.append(if (value == Math.rint(value) && Math.abs(value) < 1e15) value.toLong().toString() else value.toString())
            is Map<*, *> -> text.append("an object")
            is List<*> -> text.append("a list of ${value.size}")
            else -> text.append(value.toString())
        }
        return if (text.length <= 60) text.toString() else text.substring(0, 57) + "..."
    }
}

/**
 * The contract's checks on a parsed document, with the same field paths and reason words as the Python validator
 * (`emo.contract.schema`, JSON Schema draft 2020-12): each method checks one keyword group of the schema files
 * (`emo/contract/schemas`) and returns the typed value. JSON Schema's rules kept here: "number" excludes booleans; an
 * "integer" is a number without a fractional part (112.0 is one, 112.5 is not: reason `type`), and a range error
 * wins over the fractional part (Python reports `minimum` before `type`); string lengths count code points; a
 * `const` or `enum` refuses any other value whatever its type (reason `enum`).
 */
internal class Check(private val what: String, private val fix: String) {
    fun fail(field: String, reason: String, message: String) =
        ContractException("$what: field '$field' $message; $fix", field, reason)

    fun wrong(field: String, reason: String, expected: String, value: Any?) =
        fail(field, reason, "must be $expected, not ${BoundedJson.shown(value)}")

    fun missing(field: String, reason: String = "required") =
        ContractException("$what: field '$field' is missing; $fix", field, reason)

    /** The document itself: a JSON object. */
    @Suppress("UNCHECKED_CAST")
    fun root(value: Any?): Map<String, Any?> {
        if (value !is Map<*, *>) {
            throw ContractException("$what must be a JSON object, not ${BoundedJson.shown(value)}; $fix", "", "type")
        }
        return value as Map<String, Any?>
    }

    /** Every name of [required] in [map], in the schema's order (reason `required` for the first one missing). */
    fun require(map: Map<String, Any?>, path: String, required: List<String>) {
        for (name in required) if (!map.containsKey(name)) throw missing(child(path, name))
    }

    @Suppress("UNCHECKED_CAST")
    fun obj(field: String, value: Any?, expected: String = "an object"): Map<String, Any?> {
        if (value !is Map<*, *>) throw wrong(field, "type", expected, value)
        return value as Map<String, Any?>
    }

    /** `anyOf: [null, object]`: null, or the object. */
    fun objOrNull(field: String, value: Any?, expected: String): Map<String, Any?>? =
        if (value == null) null else obj(field, value, expected)

    fun array(field: String, value: Any?, minItems: Int, maxItems: Int, expected: String): List<Any?> {
        if (value !is List<*>) throw wrong(field, "type", expected, value)
        if (value.size < minItems || value.size > maxItems) throw wrong(field, "length", expected, value)
        return value
    }

    fun enumOf(field: String, value: Any?, allowed: List<String>, expected: String = "one of ${allowed.joinToString()}"): String {
        if (value !is String || value !in allowed) throw wrong(field, "enum", expected, value)
        return value
    }

    fun bool(field: String, value: Any?): Boolean {
        if (value !is Boolean) throw wrong(field, "type", "a boolean", value)
        return value
    }

    /** A number in [min, max] ([exclusiveMin]: above [min]). */
    fun number(field: String, value: Any?, min: Double, max: Double, expected: String, exclusiveMin: Boolean = false): Double {
        if (value !is Double) throw wrong(field, "type", expected, value)
        if ((if (exclusiveMin) value <= min else value < min) || value > max) throw wrong(field, "range", expected, value)
        return value
    }

    /** An integer in [min, max]: a number without a fractional part (checked after the range, as Python orders it). */
    fun integer(field: String, value: Any?, min: Double, max: Double, expected: String): Long {
        val v = number(field, value, min, max, expected)
        if (v != Math.floor(v)) throw wrong(field, "type", expected, value)
        return v.toLong()
    }

    /** A string of [minLength]..[maxLength] code points for which [pattern] holds (reason `format` otherwise). */
    fun string(field: String, value: Any?, minLength: Int, maxLength: Int, expected: String,
               pattern: ((String) -> Boolean)? = null): String {
        if (value !is String) throw wrong(field, "type", expected, value)
        val length = value.codePointCount(0, value.length)
        if (length < minLength || length > maxLength) throw wrong(field, "length", expected, value)
        if (pattern != null && !pattern(value)) throw wrong(field, "format", expected, value)
        return value
    }

    fun sha256(field: String, value: Any?): String = string(field, value, 0, Int.MAX_VALUE,
        "a sha256 (64 lowercase hex digits)") { s -> s.length == 64 && s.all { it in '0'..'9' || it in 'a'..'f' } }

    companion object {
        fun child(path: String, name: String): String = if (path.isEmpty()) name else "$path.$name"

        /*
         * Two stdlib calls written so that Kotlin 1.3 (Debian's kotlinc, CI) and Kotlin 2.1 (the Gradle build) both
         * compile them: String.toLowerCase(Locale) is an error from 2.1 and String.lowercase() does not exist before
         * 1.5; Char.toInt() is deprecated from 1.5 and Char.code does not exist before it.
         */

        /** [s] in lower case as Python's `str.lower()` and Java's `toLowerCase(Locale.ROOT)` give it, code point by
         * code point (U+0130 becomes "i" + U+0307, the one unconditional special casing). */
        fun lower(s: String): String {
            val out = StringBuilder(s.length)
            var i = 0
            while (i < s.length) {
                val cp = s.codePointAt(i)
                if (cp == 0x130) out.append("i\u0307") else out.appendCodePoint(Character.toLowerCase(cp))
                i += Character.charCount(cp)
            }
            return out.toString()
        }

        /** A character's UTF-16 code unit. */
        fun code(c: Char): Int = c - '\u0000'

        /** C0 and DEL: what a file name or a path may not hold. */
        fun isC0OrDel(c: Char): Boolean = c < ' ' || c == '\u007f'

        /**
         * C0, DEL, C1, U+2028/U+2029, the bidirectional controls and U+FEFF: what a class name may not hold
         * (`emo.contract.text.CONTROL`).
         */
        fun isControl(c: Char): Boolean = c < ' ' || c in '\u007f'..'\u009f' || c == '\u2028' || c == '\u2029' ||
            c == '\u061c' || c == '\u200e' || c == '\u200f' || c in '\u202a'..'\u202e' || c in '\u2066'..'\u2069' ||
            c == '\ufeff'

        /** The white space of Python's `str.isspace` that is not a control character (the label rule's `\s`). */
        fun isBlank(c: Char): Boolean = c == ' ' || c == '\u00a0' || c == '\u1680' || c in '\u2000'..'\u200a' ||
            c == '\u202f' || c == '\u205f' || c == '\u3000'

        /** A class name (`$defs.label`): not blank, without control characters (length checked apart). */
        fun isLabel(s: String): Boolean = s.none { isControl(it) } && s.any { !isBlank(it) }

        /** A file name without a folder (`$defs.file_name`): not "." or "..", no '/', '\\' or control character. */
        fun isFileName(s: String): Boolean =
            s.isNotEmpty() && s != "." && s != ".." && s.none { it == '/' || it == '\\' || isC0OrDel(it) }

        /** Base64 text as the schema's pattern says: the standard alphabet, then at most two '='. */
        fun isBase64(s: String): Boolean {
            var end = s.length
            while (end > 0 && s[end - 1] == '=' && s.length - end < 2) end--
            for (k in 0 until end) {
                val c = s[k]
                if (!(c in 'A'..'Z' || c in 'a'..'z' || c in '0'..'9' || c == '+' || c == '/')) return false
            }
            return true
        }
    }
}
