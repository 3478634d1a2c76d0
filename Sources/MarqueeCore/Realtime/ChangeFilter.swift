import Foundation

/// Why a `postgres_changes` filter was rejected; the message goes back to the client as Supabase Realtime words it.
public struct FilterError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A `postgres_changes` row filter: `column=op.value[,column=op.value…]`, all conditions ANDed.
///
/// Parsing follows Supabase Realtime (`subscriptions.ex` `parse_filters`); matching follows its SQL
/// `realtime.check_equality_op` / `is_visible_through_filters`, evaluated on the JSON record instead of typed columns:
/// SQL three-valued logic, so a NULL or missing column fails every condition (negated or not) except `is` and
/// `isdistinct`, and a filter value that does not fit the record value's type (`abc` for a number) fails too.
public struct ChangeFilter: Sendable, Hashable {
    public enum Operator: String, Sendable, Hashable, CaseIterable {
        case eq, neq, lt, lte, gt, gte, `in`, like, ilike, `is`, match, imatch, isdistinct
    }

    public struct Condition: Sendable, Hashable {
        public var column: String
        public var op: Operator { didSet { prepared = Prepared(op: op, values: values) } }
        public var negated: Bool
        /// One value, or the list for `in`; for `is`: `null`, `true`, `false` or `unknown`.
        public var values: [String] { didSet { prepared = Prepared(op: op, values: values) } }
        var prepared: Prepared

        public init(column: String, op: Operator, negated: Bool = false, values: [String]) {
            self.column = column
            self.op = op
            self.negated = negated
            self.values = values
            prepared = Prepared(op: op, values: values)
        }

        public static func == (lhs: Condition, rhs: Condition) -> Bool {
            lhs.column == rhs.column && lhs.op == rhs.op && lhs.negated == rhs.negated && lhs.values == rhs.values
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(column)
            hasher.combine(op)
            hasher.combine(negated)
            hasher.combine(values)
        }
    }

    /// Empty: every row matches.
    public var conditions: [Condition]

    public init(conditions: [Condition] = []) { self.conditions = conditions }

    public static let all = ChangeFilter()

    /// The most values an `in` list may hold.
    public static let maxInValues = 100

    /// The columns the filter reads, each once, in order of first use.
    public var columns: [String] {
        var seen: [String] = []
        for condition in conditions where !seen.contains(condition.column) { seen.append(condition.column) }
        return seen
    }

    /// Whether a row passes every condition.
    public func matches(_ record: JSONObject) -> Bool {
        conditions.allSatisfy { $0.evaluate(record[$0.column]) == true }
    }

    /// The first non-negated `eq` condition whose value has one canonical text whatever the column's type, as
    /// (column, canonical value): `ChangeFilter.canonicalText(record[column]) == value` exactly when the condition holds.
    ///
    /// Values that mean different things for different column types are skipped, because no single key can stand
    /// for them: numbers not in canonical form (`42.0`, `1e3`, `007`, or digits a float can't hold), and boolean
    /// spellings other than `true` / `false` (`t`, `TRUE`). Those conditions still work through `matches`.
    public var indexKey: (column: String, value: String)? {
        for condition in conditions where condition.op == .eq && !condition.negated && condition.values.count == 1 {
            if let key = Self.indexText(condition.values[0]) { return (condition.column, key) }
        }
        return nil
    }

    /// The canonical text of a record value, for comparison with `indexKey`: numbers as plain decimals without
    /// exponent or trailing zeros (`42.0` → `42`), booleans `true` / `false`, uuids lowercased, `jsonb` with sorted
    /// keys, other strings unchanged; nil for NULL.
    public static func canonicalText(_ value: JSONValue) -> String? {
        switch value {
        case .null: return nil
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return canonicalNumber(d.description) ?? d.description
        case .string(let s): return isUUID(s) ? s.lowercased() : s
        case .raw(let r): return canonicalNumber(r) ?? canonicalJSON(r) ?? r
        case .array, .object: return canonicalJSON(value.serialized())
        }
    }

    static func indexText(_ text: String) -> String? {
        if let number = canonicalNumber(text) {
            guard number == text, let d = Double(number), canonicalNumber(d.description) == number else { return nil }
            return number
        }
        switch text.lowercased() {
        case "t", "f", "true", "false": return text == "true" || text == "false" ? text : nil
        default: break
        }
        if isUUID(text) { return text.lowercased() }
        if looksLikeJSON(text) { return canonicalJSON(text) == text ? text : nil }
        return text
    }
}

// MARK: - Parsing

extension ChangeFilter {
    private static let prefix = "Error parsing `filter` params: "

    /// Parses `column=op.value[,column=op.value…]`. nil, empty or blank text is `.all`.
    public static func parse(_ text: String?) throws(FilterError) -> ChangeFilter {
        guard let text else { return .all }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return .all }
        var conditions: [Condition] = []
        for segment in splitTopLevel(Array(trimmed.utf8)) { conditions.append(try parseSegment(segment)) }
        return ChangeFilter(conditions: conditions)
    }

    /// Splits on commas outside `(...)` and outside a `"..."` that opens after `.`, `(` or `,` (backslash escapes).
    static func splitTopLevel(_ bytes: [UInt8]) -> [String] {
        var parts: [String] = []
        var current: [UInt8] = []
        var depth = 0
        var quoted = false
        var previous: UInt8 = 0
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if quoted {
                if byte == Ascii.backslash, index < bytes.count {
                    current += [byte, bytes[index]]
                    previous = bytes[index]
                    index += 1
                    continue
                }
                if byte == Ascii.quote { quoted = false }
            } else if byte == Ascii.quote, previous == Ascii.dot || previous == Ascii.openParen || previous == Ascii.comma {
                quoted = true
            } else if byte == Ascii.openParen {
                depth += 1
            } else if byte == Ascii.closeParen {
                depth = max(0, depth - 1)
            } else if byte == Ascii.comma, depth == 0 {
                parts.append(String(decoding: current, as: UTF8.self))
                current = []
                previous = 0
                continue
            }
            current.append(byte)
            previous = byte
        }
        parts.append(String(decoding: current, as: UTF8.self))
        return parts
    }

    private static func parseSegment(_ segment: String) throws(FilterError) -> Condition {
        let text = segment.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { throw FilterError(prefix + "filter must not contain empty segments (check for extra commas)") }
        let bytes = Array(text.utf8)
        guard let equals = bytes.firstIndex(of: Ascii.equals) else { throw FilterError(prefix + inspect([text])) }
        let column = String(decoding: bytes[..<equals], as: UTF8.self)
        var rest = bytes[(equals + 1)...]
        var negated = false
        if rest.starts(with: Array("not.".utf8)) {
            negated = true
            rest = rest.dropFirst(4)
        }
        guard let dot = rest.firstIndex(of: Ascii.dot) else { throw FilterError(prefix + inspect([String(decoding: rest, as: UTF8.self)])) }
        let opText = String(decoding: rest[..<dot], as: UTF8.self)
        let valueBytes = rest[(dot + 1)...]
        guard let op = Operator(rawValue: opText) else {
            throw FilterError(prefix + inspect([opText, String(decoding: valueBytes, as: UTF8.self)]))
        }
        if column.isEmpty { throw FilterError(prefix + "missing column name in `\(text)`") }
        guard column.allSatisfy({ $0 == "_" || $0.isLetter || ("0"..."9").contains($0) }) else {
            throw FilterError(prefix + "invalid column name \(inspect(column)): use letters, digits and underscores")
        }
        var values: [String]
        switch op {
        case .in:
            guard valueBytes.count >= 2, valueBytes.first == Ascii.openParen, valueBytes.last == Ascii.closeParen else {
                throw FilterError(prefix + "`in` filter value must be wrapped by parentheses")
            }
            values = try parseList(valueBytes.dropFirst().dropLast())
        case .is:
            values = [unquote(valueBytes).lowercased()]
            guard ["null", "true", "false", "unknown"].contains(values[0]) else {
                throw FilterError(prefix + "invalid value for is filter: must be null, true, false, or unknown")
            }
        default:
            values = [unquote(valueBytes)]
        }
        let condition = Condition(column: column, op: op, negated: negated, values: values)
        if (op == .like || op == .ilike), condition.prepared.like == nil {
            throw FilterError(prefix + "LIKE pattern must not end with escape character")
        }
        if (op == .match || op == .imatch), condition.prepared.regex == nil {
            throw FilterError(prefix + "invalid regular expression for \(op.rawValue) filter: \(inspect(values[0]))")
        }
        return condition
    }

    /// A value wrapped in `"..."` loses its quotes and backslash escapes; a malformed one is kept as written.
    private static func unquote(_ bytes: ArraySlice<UInt8>) -> String {
        let original = String(decoding: bytes, as: UTF8.self)
        guard bytes.first == Ascii.quote else { return original }
        var out: [UInt8] = []
        var index = bytes.startIndex + 1
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == Ascii.quote { return index == bytes.endIndex - 1 ? String(decoding: out, as: UTF8.self) : original }
            if byte == Ascii.backslash, index + 1 < bytes.endIndex { index += 1 }
            out.append(bytes[index])
            index += 1
        }
        return original
    }

    /// The elements of an `in` list, read like the Postgres array literal `{…}` Supabase turns it into: elements
    /// separated by commas, blanks around unquoted elements dropped, `"..."` quoting and backslash escapes.
    private static func parseList(_ bytes: ArraySlice<UInt8>) throws(FilterError) -> [String] {
        if bytes.allSatisfy(\.isASCIIBlankByte) { return [] }
        let malformed = FilterError(prefix + "malformed `in` filter value: \(inspect(String(decoding: bytes, as: UTF8.self)))")
        var items: [String] = []
        var index = bytes.startIndex
        while true {
            while index < bytes.endIndex, bytes[index].isASCIIBlankByte { index += 1 }
            var item: [UInt8] = []
            if index < bytes.endIndex, bytes[index] == Ascii.quote {
                index += 1
                var closed = false
                while index < bytes.endIndex {
                    var byte = bytes[index]
                    index += 1
                    if byte == Ascii.quote {
                        closed = true
                        break
                    }
                    if byte == Ascii.backslash, index < bytes.endIndex {
                        byte = bytes[index]
                        index += 1
                    }
                    item.append(byte)
                }
                guard closed else { throw malformed }
                while index < bytes.endIndex, bytes[index].isASCIIBlankByte { index += 1 }
            } else {
                var significant = 0
                while index < bytes.endIndex, bytes[index] != Ascii.comma {
                    var byte = bytes[index]
                    index += 1
                    if byte == Ascii.quote || byte == Ascii.openBrace || byte == Ascii.closeBrace { throw malformed }
                    if byte == Ascii.backslash {
                        guard index < bytes.endIndex else { throw malformed }
                        byte = bytes[index]
                        index += 1
                        item.append(byte)
                        significant = item.count
                    } else {
                        item.append(byte)
                        if !byte.isASCIIBlankByte { significant = item.count }
                    }
                }
                item.removeLast(item.count - significant)
                if item.isEmpty { throw malformed }
            }
            items.append(String(decoding: item, as: UTF8.self))
            if items.count > maxInValues { throw FilterError(prefix + "too many values for `in` filter. Maximum \(maxInValues)") }
            if index >= bytes.endIndex { return items }
            guard bytes[index] == Ascii.comma else { throw malformed }
            index += 1
        }
    }

    /// Elixir's `inspect` of a list of strings, as in Supabase's messages: `["foo", "hey"]`.
    private static func inspect(_ items: [String]) -> String { "[" + items.map(inspect).joined(separator: ", ") + "]" }

    private static func inspect(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

// MARK: - Matching

extension ChangeFilter.Condition {
    /// SQL three-valued result: nil is NULL/unknown (missing column, NULL value, or a value of the wrong type).
    func evaluate(_ value: JSONValue?) -> Bool? {
        guard let value else { return nil }
        if value.isNull, op != .is, op != .isdistinct { return nil }
        let first = prepared.literals.first ?? Literal("")
        let result: Bool?
        switch op {
        case .is: result = Self.isTest(value, first.text)
        case .isdistinct: result = value.isNull ? true : Self.equal(value, first).map { !$0 }
        case .eq: result = Self.equal(value, first)
        case .neq: result = Self.equal(value, first).map { !$0 }
        case .lt: result = Self.order(value, first).map { $0 < 0 }
        case .lte: result = Self.order(value, first).map { $0 <= 0 }
        case .gt: result = Self.order(value, first).map { $0 > 0 }
        case .gte: result = Self.order(value, first).map { $0 >= 0 }
        case .in:
            // `= any(array)`: true if any element is equal, else NULL if any comparison was NULL, else false.
            var any: Bool? = false
            for literal in prepared.literals {
                let equal = Self.equal(value, literal)
                if equal == true {
                    any = true
                    break
                }
                if equal == nil { any = nil }
            }
            result = any
        case .like, .ilike:
            guard case .string(let s) = value, let pattern = prepared.like else { return nil }
            result = LikePattern.matches(pattern, Array((op == .ilike ? s.lowercased() : s).unicodeScalars))
        case .match, .imatch:
            guard case .string(let s) = value, let box = prepared.regex else { return nil }
            result = box.regex.firstMatch(in: s, options: [], range: NSRange(location: 0, length: s.utf16.count)) != nil
        }
        return result.map { negated ? !$0 : $0 }
    }

    private static func isTest(_ value: JSONValue, _ keyword: String) -> Bool? {
        if keyword == "null" { return value.isNull }
        if value.isNull { return keyword == "unknown" }
        guard let b = value.boolValue else { return nil }
        return keyword == "true" ? b : keyword == "false" ? !b : false
    }

    private static func equal(_ value: JSONValue, _ literal: Literal) -> Bool? {
        switch value {
        case .null: return nil
        case .bool(let b): return literal.bool.map { $0 == b }
        case .int(let i): return literal.number.map { $0 == String(i) }
        case .double(let d): return literal.double.map { $0 == d }
        case .string(let s):
            if let uuid = literal.uuid, ChangeFilter.isUUID(s) { return s.lowercased() == uuid }
            return s == literal.text
        case .raw(let r):
            if let number = ChangeFilter.canonicalNumber(r) { return literal.number.map { $0 == number } }
            guard let json = literal.json, let own = ChangeFilter.canonicalJSON(r) else { return nil }
            return own == json
        case .array, .object:
            guard let json = literal.json else { return nil }
            return ChangeFilter.canonicalJSON(value.serialized()) == json
        }
    }

    /// -1, 0 or 1 for value <, =, > literal; nil when the two don't compare.
    private static func order(_ value: JSONValue, _ literal: Literal) -> Int? {
        switch value {
        case .bool(let b): return literal.bool.map { compare(b ? 1 : 0, $0 ? 1 : 0) }
        case .int(let i): return literal.number.map { compareDecimals(String(i), $0) }
        case .double(let d): return literal.double.map { compare(d, $0) }
        case .raw(let r):
            guard let number = ChangeFilter.canonicalNumber(r), let other = literal.number else { return nil }
            return compareDecimals(number, other)
        case .string(let s):
            // C collation: byte order. Uuids compare by their lowercase text, which is their byte order.
            let (left, right) = literal.uuid != nil && ChangeFilter.isUUID(s) ? (s.lowercased(), literal.uuid ?? "") : (s, literal.text)
            if left == right { return 0 }
            return left.utf8.lexicographicallyPrecedes(right.utf8) ? -1 : 1
        case .null, .array, .object: return nil
        }
    }

    private static func compare<T: Comparable>(_ a: T, _ b: T) -> Int { a < b ? -1 : a == b ? 0 : 1 }

    /// Compares two canonical decimals (see `ChangeFilter.canonicalNumber`).
    private static func compareDecimals(_ a: String, _ b: String) -> Int {
        let negativeA = a.hasPrefix("-")
        let negativeB = b.hasPrefix("-")
        if negativeA != negativeB { return negativeA ? -1 : 1 }
        func parts(_ s: String) -> (Substring.UTF8View, Substring.UTF8View) {
            let digits = s.drop(while: { $0 == "-" })
            let split = digits.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            return (split[0].utf8, split.count > 1 ? split[1].utf8 : Substring().utf8)
        }
        let (integerA, fractionA) = parts(a)
        let (integerB, fractionB) = parts(b)
        var result: Int
        if integerA.count != integerB.count {
            result = integerA.count < integerB.count ? -1 : 1
        } else if !integerA.elementsEqual(integerB) {
            result = integerA.lexicographicallyPrecedes(integerB) ? -1 : 1
        } else if fractionA.elementsEqual(fractionB) {
            result = 0
        } else {
            result = fractionA.lexicographicallyPrecedes(fractionB) ? -1 : 1
        }
        return negativeA ? -result : result
    }
}

// MARK: - Prepared values

/// A filter value read every way a record value might need it.
struct Literal: Sendable {
    let text: String
    let number: String?
    let double: Double?
    let bool: Bool?
    let uuid: String?
    let json: String?

    init(_ text: String) {
        self.text = text
        number = ChangeFilter.canonicalNumber(text)
        double = number.flatMap { Double($0) }
        switch text.lowercased() {
        case "t", "true": bool = true
        case "f", "false": bool = false
        default: bool = nil
        }
        uuid = ChangeFilter.isUUID(text) ? text.lowercased() : nil
        json = ChangeFilter.looksLikeJSON(text) ? ChangeFilter.canonicalJSON(text) : nil
    }
}

/// `NSRegularExpression` is immutable and documented as safe to share between threads.
final class RegexBox: @unchecked Sendable {
    let regex: NSRegularExpression
    init(_ regex: NSRegularExpression) { self.regex = regex }
}

enum LikePattern {
    enum Token: Sendable, Equatable {
        case scalar(Unicode.Scalar)
        case one
        case many
    }

    /// `%` (or `*`) is any run, `_` one character, `\` escapes; nil if the pattern ends with `\`.
    static func tokens(_ pattern: String) -> [Token]? {
        var tokens: [Token] = []
        var scalars = pattern.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            switch scalar {
            case "\\":
                guard let next = scalars.next() else { return nil }
                tokens.append(.scalar(next))
            case "%", "*": if tokens.last != .many { tokens.append(.many) }
            case "_": tokens.append(.one)
            default: tokens.append(.scalar(scalar))
            }
        }
        return tokens
    }

    static func matches(_ pattern: [Token], _ text: [Unicode.Scalar]) -> Bool {
        var p = 0
        var t = 0
        var star = -1
        var resume = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == .one || pattern[p] == .scalar(text[t]) {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == .many {
                star = p
                resume = t
                p += 1
            } else if star >= 0 {
                p = star + 1
                resume += 1
                t = resume
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == .many { p += 1 }
        return p == pattern.count
    }
}

struct Prepared: Sendable {
    var literals: [Literal]
    var like: [LikePattern.Token]?
    var regex: RegexBox?

    init(op: ChangeFilter.Operator, values: [String]) {
        literals = values.map(Literal.init)
        if op == .like || op == .ilike, let pattern = values.first {
            like = LikePattern.tokens(op == .ilike ? pattern.lowercased() : pattern)
        }
        if op == .match || op == .imatch, let pattern = values.first,
            let regex = try? NSRegularExpression(pattern: pattern, options: op == .imatch ? [.caseInsensitive] : [])
        {
            self.regex = RegexBox(regex)
        }
    }
}

// MARK: - Value text

extension ChangeFilter {
    /// The plain decimal form of a number written the way Postgres reads numbers (`[+-]digits[.digits][e[+-]digits]`,
    /// blanks around): no exponent, no leading or trailing zeros, `0` for zero. nil if the text is not a number.
    static func canonicalNumber(_ text: String) -> String? {
        var bytes = Array(text.utf8)[...]
        while bytes.first?.isASCIIBlankByte == true { bytes = bytes.dropFirst() }
        while bytes.last?.isASCIIBlankByte == true { bytes = bytes.dropLast() }
        var negative = false
        if let sign = bytes.first, sign == Ascii.plus || sign == Ascii.minus {
            negative = sign == Ascii.minus
            bytes = bytes.dropFirst()
        }
        let integer = bytes.prefix(while: \.isASCIIDigitByte)
        bytes = bytes.dropFirst(integer.count)
        var fraction = ArraySlice<UInt8>()
        if bytes.first == Ascii.dot {
            fraction = bytes.dropFirst().prefix(while: \.isASCIIDigitByte)
            bytes = bytes.dropFirst(1 + fraction.count)
        }
        guard !integer.isEmpty || !fraction.isEmpty else { return nil }
        var exponent = 0
        if let e = bytes.first, e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            var rest = bytes.dropFirst()
            var exponentNegative = false
            if let sign = rest.first, sign == Ascii.plus || sign == Ascii.minus {
                exponentNegative = sign == Ascii.minus
                rest = rest.dropFirst()
            }
            let digits = rest.prefix(while: \.isASCIIDigitByte)
            guard !digits.isEmpty, digits.count <= 4, let value = Int(String(decoding: digits, as: UTF8.self)), value <= 1000 else {
                return nil
            }
            exponent = exponentNegative ? -value : value
            bytes = rest.dropFirst(digits.count)
        }
        guard bytes.isEmpty else { return nil }
        var digits = Array(integer) + Array(fraction)
        var point = integer.count + exponent
        let leading = digits.prefix(while: { $0 == Ascii.zero }).count
        digits.removeFirst(leading)
        point -= leading
        while digits.last == Ascii.zero { digits.removeLast() }
        if digits.isEmpty { return "0" }
        var out: [UInt8] = negative ? [Ascii.minus] : []
        if point <= 0 {
            out += [Ascii.zero, Ascii.dot] + Array(repeating: Ascii.zero, count: -point) + digits
        } else if point >= digits.count {
            out += digits + Array(repeating: Ascii.zero, count: point - digits.count)
        } else {
            out += digits[..<point] + [Ascii.dot] + digits[point...]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `8-4-4-4-12` hex digits, either case.
    static func isUUID(_ text: String) -> Bool {
        let bytes = text.utf8
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if index == 8 || index == 13 || index == 18 || index == 23 {
                guard byte == Ascii.minus else { return false }
            } else if !(byte.isASCIIDigitByte || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)) {
                return false
            }
        }
        return true
    }

    static func looksLikeJSON(_ text: String) -> Bool {
        guard let first = text.utf8.first else { return false }
        return first == Ascii.openBrace || first == UInt8(ascii: "[") || first == Ascii.quote || text == "true" || text == "false" || text == "null"
    }

    /// JSON text with object keys sorted and numbers canonical, so equal `jsonb` values have equal text; nil if invalid.
    static func canonicalJSON(_ text: String) -> String? {
        guard let value = try? JSONValue.parse(text) else { return nil }
        var out = ""
        writeCanonical(value, to: &out)
        return out
    }

    private static func writeCanonical(_ value: JSONValue, to out: inout String) {
        switch value {
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                writeCanonical(item, to: &out)
            }
            out += "]"
        case .object(let object):
            out += "{"
            let sorted = object.entries.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            for (index, entry) in sorted.enumerated() {
                if index > 0 { out += "," }
                JSONValue.writeString(entry.key, to: &out)
                out += ":"
                writeCanonical(entry.value, to: &out)
            }
            out += "}"
        case .double, .raw: out += canonicalText(value) ?? "null"
        case .null, .bool, .int, .string: value.write(to: &out)
        }
    }
}

/// ASCII bytes the filter grammar cares about.
private enum Ascii {
    static let backslash = UInt8(ascii: "\\")
    static let quote = UInt8(ascii: "\"")
    static let dot = UInt8(ascii: ".")
    static let comma = UInt8(ascii: ",")
    static let equals = UInt8(ascii: "=")
    static let openParen = UInt8(ascii: "(")
    static let closeParen = UInt8(ascii: ")")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let plus = UInt8(ascii: "+")
    static let minus = UInt8(ascii: "-")
    static let zero = UInt8(ascii: "0")
}

extension UInt8 {
    fileprivate var isASCIIDigitByte: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    fileprivate var isASCIIBlankByte: Bool { self == 0x20 || (0x09...0x0D).contains(self) }
}
