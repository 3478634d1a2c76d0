import Foundation

/// Why a `postgres_changes` filter was rejected; the message goes back to the client worded as Supabase Realtime does.
public struct FilterError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A `postgres_changes` row filter: `column=op.value[,column=op.value…]`, all conditions ANDed.
///
/// Parsing follows Supabase Realtime (`subscriptions.ex` `parse_filters`). Matching follows its SQL
/// (`realtime.check_equality_op`, `is_visible_through_filters`) on the JSON record instead of typed columns, with SQL
/// three-valued logic: a NULL or missing column fails every condition, negated or not, except `is` and `isdistinct`
/// (a missing column fails those too), and so does a filter value that doesn't fit the record value (`abc` for a number).
///
/// `match`/`imatch` patterns are PostgreSQL regular expressions and `like`/`ilike` patterns SQL LIKE patterns, both run
/// by `LinearRegex` in time linear in the text (see there for the supported syntax). An evaluation that runs out of
/// `LinearRegex.maxSteps` is unknown, like a NULL: neither the condition nor its negation holds.
///
/// Bounds, each refused by `parse` with a message: `maxFilterBytes` of filter text, `maxConditions` conditions,
/// `maxInValues` values in an `in` list, `maxPatternBytes` per pattern, and `LinearRegex.maxStates` per compiled regex.
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
    }

    /// Empty: every row matches.
    public var conditions: [Condition]

    public init(conditions: [Condition] = []) { self.conditions = conditions }

    public static let all = ChangeFilter()

    /// The most values an `in` list may hold.
    public static let maxInValues = 100

    /// The most conditions one filter may have.
    public static let maxConditions = 16

    /// The longest filter text, in UTF-8 bytes, blanks around it not counted.
    public static let maxFilterBytes = 1024

    /// The longest `like`, `ilike`, `match` or `imatch` pattern, in UTF-8 bytes.
    public static let maxPatternBytes = LinearRegex.maxPatternBytes

    /// The columns the filter reads, each once, in order of first use.
    public var columns: [String] {
        var seen: [String] = []
        for condition in conditions where !seen.contains(condition.column) { seen.append(condition.column) }
        return seen
    }

    /// Whether a row (record values keyed by column name) passes every condition.
    public func matches(_ record: JSONObject) -> Bool {
        conditions.allSatisfy { $0.evaluate(record[$0.column]) == true }
    }

    /// The first non-negated `eq` condition whose value has one canonical text whatever the column's type, as
    /// (column, canonical value): `ChangeFilter.canonicalText(record[column]) == value` exactly when it holds.
    ///
    /// Skipped, because they mean different things for different column types: numbers not in canonical form (`42.0`,
    /// `1e3`, `007`, or more digits than a float holds), boolean spellings other than `true`/`false` (`t`, `TRUE`),
    /// JSON text other than its canonical form, and dates and timestamps. `matches` still handles those conditions.
    public var indexKey: (column: String, value: String)? {
        for condition in conditions where condition.op == .eq && !condition.negated && condition.values.count == 1 {
            if let key = Self.indexText(condition.values[0]) { return (condition.column, key) }
        }
        return nil
    }

    /// The canonical text of a record value, for comparison with `indexKey`: numbers as plain decimals without exponent
    /// or trailing zeros (`42.0` → `42`), booleans `true`/`false`, uuids lowercased, `jsonb` compact with sorted keys,
    /// other strings unchanged; nil for NULL.
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
        if ["t", "f", "true", "false"].contains(text.lowercased()) { return text == "true" || text == "false" ? text : nil }
        if isUUID(text) { return text.lowercased() }
        if looksLikeJSON(text) { return canonicalJSON(text) == text ? text : nil }
        // a date or timestamp equals record values of other spellings (`T`, another offset): matched one by one
        if FilterMoment(text) != nil { return nil }
        return text
    }
}

// MARK: - Parsing

extension ChangeFilter {
    private static let prefix = "Error parsing `filter` params: "

    /// Parses `column=op.value[,column=op.value…]`; nil, empty or blank text is `.all`.
    public static func parse(_ text: String?) throws(FilterError) -> ChangeFilter {
        let trimmed = (text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return .all }
        let bytes = Array(trimmed.utf8)
        if bytes.count > maxFilterBytes {
            throw FilterError(prefix + "filter is too long (\(bytes.count) bytes). Maximum \(maxFilterBytes) bytes")
        }
        let parts = split(bytes[...], list: false).parts
        if parts.count > maxConditions { throw FilterError(prefix + "too many conditions in filter. Maximum \(maxConditions)") }
        var conditions: [Condition] = []
        for part in parts { conditions.append(try parseSegment(string(part))) }
        return ChangeFilter(conditions: conditions)
    }

    /// Splits on commas outside `"..."` (inside, `\` escapes). At the top level, as Supabase's `split_top_level`: also
    /// outside `(...)`, and a quote opens only right after `.`, `(` or `,`. In an `in` list, which Supabase hands to
    /// Postgres as an array literal, a quote opens anywhere and `\` escapes outside quotes too.
    static func split(_ bytes: ArraySlice<UInt8>, list: Bool) -> (parts: [ArraySlice<UInt8>], unclosed: Bool) {
        var parts: [ArraySlice<UInt8>] = []
        var (start, index, depth, quoted, previous) = (bytes.startIndex, bytes.startIndex, 0, false, UInt8(0))
        while index < bytes.endIndex {
            let byte = bytes[index]
            index += 1
            if byte == Ascii.backslash, quoted || list, index < bytes.endIndex {
                previous = bytes[index]
                index += 1
                continue
            }
            if quoted {
                quoted = byte != Ascii.quote
            } else if byte == Ascii.quote, list || [Ascii.dot, Ascii.openParen, Ascii.comma].contains(previous) {
                quoted = true
            } else if byte == Ascii.openParen, !list {
                depth += 1
            } else if byte == Ascii.closeParen, !list {
                depth = max(0, depth - 1)
            } else if byte == Ascii.comma, depth == 0 {
                parts.append(bytes[start..<(index - 1)])
                (start, previous) = (index, 0)
                continue
            }
            previous = byte
        }
        parts.append(bytes[start...])
        return (parts, quoted)
    }

    private static func parseSegment(_ segment: String) throws(FilterError) -> Condition {
        let text = segment.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { throw FilterError(prefix + "filter must not contain empty segments (check for extra commas)") }
        let bytes = Array(text.utf8)
        guard let equals = bytes.firstIndex(of: Ascii.equals) else { throw FilterError(prefix + inspect([text])) }
        let column = String(decoding: bytes[..<equals], as: UTF8.self)
        var rest = bytes[(equals + 1)...]
        let negated = rest.starts(with: Array("not.".utf8))
        if negated { rest = rest.dropFirst(4) }
        guard let dot = rest.firstIndex(of: Ascii.dot) else { throw FilterError(prefix + inspect([string(rest)])) }
        let valueBytes = rest[(dot + 1)...]
        guard let op = Operator(rawValue: string(rest[..<dot])) else {
            throw FilterError(prefix + inspect([string(rest[..<dot]), string(valueBytes)]))
        }
        if column.isEmpty { throw FilterError(prefix + "missing column name in \(inspect(text))") }
        guard column.allSatisfy({ $0 == "_" || $0.isLetter || ("0"..."9").contains($0) }) else {
            throw FilterError(prefix + "invalid column name \(inspect(column)): use letters, digits and underscores")
        }
        var values = [unquote(valueBytes) ?? string(valueBytes)]
        if op == .in {
            guard valueBytes.count >= 2, valueBytes.first == Ascii.openParen, valueBytes.last == Ascii.closeParen else {
                throw FilterError(prefix + "`in` filter value must be wrapped by parentheses")
            }
            values = try parseList(valueBytes.dropFirst().dropLast())
        } else if op == .is {
            values[0] = values[0].lowercased()
            guard ["null", "true", "false", "unknown"].contains(values[0]) else {
                throw FilterError(prefix + "invalid value for is filter: must be null, true, false, or unknown")
            }
        }
        let isPattern = [.like, .ilike, .match, .imatch].contains(op)
        if isPattern, values[0].utf8.count > maxPatternBytes {
            throw FilterError(
                prefix + "pattern for `\(op.rawValue)` filter is too long (\(values[0].utf8.count) bytes). Maximum \(maxPatternBytes) bytes")
        }
        let condition = Condition(column: column, op: op, negated: negated, values: values)
        if isPattern, let error = condition.prepared.patternError {
            if op == .like || op == .ilike { throw FilterError(prefix + error.reason) }
            let (kind, pattern) = ("regular expression for \(op.rawValue) filter", "\(inspect(values[0])) (\(error.reason))")
            switch error.kind {
            case .invalid: throw FilterError(prefix + "invalid \(kind): \(pattern)")
            case .unsupported: throw FilterError(prefix + "unsupported \(kind): \(pattern)")
            case .tooLarge: throw FilterError(prefix + "\(kind) is too complex: \(pattern)")
            }
        }
        return condition
    }

    private static func string(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

    /// The text inside `"..."`, with `\` escapes resolved; nil unless the bytes are exactly one quoted string.
    private static func unquote(_ bytes: ArraySlice<UInt8>) -> String? {
        guard bytes.first == Ascii.quote else { return nil }
        var (out, index) = ([UInt8](), bytes.startIndex + 1)
        while index < bytes.endIndex {
            if bytes[index] == Ascii.quote { return index == bytes.endIndex - 1 ? string(out[...]) : nil }
            if bytes[index] == Ascii.backslash, index + 1 < bytes.endIndex { index += 1 }
            out.append(bytes[index])
            index += 1
        }
        return nil
    }

    /// The elements of an `in` list, read like the Postgres array literal Supabase makes of it: blanks around elements
    /// dropped, `"..."` quoting and `\` escapes.
    private static func parseList(_ bytes: ArraySlice<UInt8>) throws(FilterError) -> [String] {
        if bytes.allSatisfy(\.isASCIIBlankByte) { return [] }
        let malformed = FilterError(prefix + "malformed `in` filter value: \(inspect(string(bytes)))")
        let (parts, unclosed) = split(bytes, list: true)
        if unclosed { throw malformed }
        if parts.count > maxInValues { throw FilterError(prefix + "too many values for `in` filter. Maximum \(maxInValues)") }
        var items: [String] = []
        for part in parts {
            guard let first = part.firstIndex(where: { !$0.isASCIIBlankByte }), let last = part.lastIndex(where: { !$0.isASCIIBlankByte }),
                let item = unquote(part[first] == Ascii.quote ? part[first...last] : ([Ascii.quote] + part[first...last] + [Ascii.quote])[...])
            else { throw malformed }
            items.append(item)
        }
        return items
    }

    /// Elixir's `inspect` of a list of strings, as in Supabase's messages: `["foo", "hey"]`.
    private static func inspect(_ items: [String]) -> String { "[" + items.map(inspect).joined(separator: ", ") + "]" }

    private static func inspect(_ text: String) -> String {
        let escaped = text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return "\"" + escaped.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t") + "\""
    }
}

// MARK: - Matching

extension ChangeFilter.Condition {
    /// SQL three-valued result: nil is NULL/unknown (missing column, NULL value, or a value of another type).
    func evaluate(_ value: JSONValue?) -> Bool? {
        guard let value else { return nil }
        if value.isNull, op != .is, op != .isdistinct { return nil }
        let first = prepared.literals.first ?? ChangeFilter.Literal("")
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
            // `= any(array)`: true if an element is equal, else NULL if a comparison was NULL, else false.
            let results = prepared.literals.lazy.map { Self.equal(value, $0) }
            result = results.contains(true) ? true : results.contains(nil) ? nil : false
        case .like, .ilike, .match, .imatch:
            // nil from `matches` (out of steps) stays unknown whatever `negated` says.
            guard case .string(let s) = value, let pattern = prepared.pattern else { return nil }
            result = pattern.matches(s)
        }
        return result.map { negated ? !$0 : $0 }
    }

    private static func isTest(_ value: JSONValue, _ keyword: String) -> Bool? {
        if keyword == "null" { return value.isNull }
        if value.isNull { return keyword == "unknown" }
        guard let b = value.boolValue else { return nil }
        return keyword == "true" ? b : keyword == "false" ? !b : false
    }

    private static func equal(_ value: JSONValue, _ literal: ChangeFilter.Literal) -> Bool? {
        switch value {
        case .null: return nil
        case .bool(let b): return literal.bool.map { $0 == b }
        case .int(let i): return literal.number.map { $0 == String(i) }
        case .double(let d): return literal.double.map { $0 == d }
        case .string(let s):
            if let uuid = literal.uuid, ChangeFilter.isUUID(s) { return s.lowercased() == uuid }
            if let moment = literal.moment, let value = Self.timestamp(s) { return value == moment }
            return s == literal.text
        case .raw(let r):
            if let number = ChangeFilter.canonicalNumber(r) { return literal.number.map { $0 == number } }
            return literal.json.map { $0 == ChangeFilter.canonicalJSON(r) }
        case .array, .object: return literal.json.map { $0 == ChangeFilter.canonicalJSON(value.serialized()) }
        }
    }

    /// -1, 0 or 1 for value <, =, > literal; nil when they don't compare (`jsonb`, or a literal of another type).
    private static func order(_ value: JSONValue, _ literal: ChangeFilter.Literal) -> Int? {
        switch value {
        case .bool(let b): return literal.bool.map { compare(b ? 1 : 0, $0 ? 1 : 0) }
        case .int(let i): return literal.number.map { compareDecimals(String(i), $0) }
        case .double(let d): return literal.double.map { compare(d, $0) }
        case .raw(let r):
            guard let number = ChangeFilter.canonicalNumber(r), let other = literal.number else { return nil }
            return compareDecimals(number, other)
        case .string(let s):
            if let moment = literal.moment, let value = Self.timestamp(s) { return value < moment ? -1 : value == moment ? 0 : 1 }
            // C collation: byte order. Uuids compare by their lowercase text, which is their byte order.
            let (left, right) = ChangeFilter.isUUID(s) && literal.uuid != nil ? (s.lowercased(), literal.uuid ?? "") : (s, literal.text)
            if left == right { return 0 }
            return left.utf8.lexicographicallyPrecedes(right.utf8) ? -1 : 1
        case .null, .array, .object: return nil
        }
    }

    private static func compare<T: Comparable>(_ a: T, _ b: T) -> Int { a < b ? -1 : a == b ? 0 : 1 }

    /// A record value in the form `to_jsonb` gives timestamps (`2026-12-03T19:52:55.304141+00:00`), as a moment.
    private static func timestamp(_ text: String) -> FilterMoment? {
        let utf8 = text.utf8
        guard utf8.count >= 19, utf8[utf8.index(utf8.startIndex, offsetBy: 10)] == UInt8(ascii: "T") else { return nil }
        return FilterMoment(text)
    }

    /// Compares two canonical decimals (see `ChangeFilter.canonicalNumber`), exactly.
    private static func compareDecimals(_ a: String, _ b: String) -> Int {
        let (negativeA, negativeB) = (a.hasPrefix("-"), b.hasPrefix("-"))
        if negativeA != negativeB { return negativeA ? -1 : 1 }
        func parts(_ s: String) -> [Substring.UTF8View] {
            let split = s.drop(while: { $0 == "-" }).split(separator: ".", omittingEmptySubsequences: false).map(\.utf8)
            return split.count > 1 ? split : split + [Substring().utf8]
        }
        let (x, y) = (parts(a), parts(b))
        var result = 0
        if x[0].count != y[0].count {
            result = x[0].count < y[0].count ? -1 : 1
        } else if let index = [0, 1].first(where: { !x[$0].elementsEqual(y[$0]) }) {
            result = x[index].lexicographicallyPrecedes(y[index]) ? -1 : 1
        }
        return negativeA ? -result : result
    }
}

// MARK: - Prepared values

extension ChangeFilter {
    /// A filter value read every way a record value might need it.
    struct Literal: Sendable {
        let text: String
        let number: String?, uuid: String?, json: String?
        /// The value as a date or timestamp, for record values that are timestamps.
        let moment: FilterMoment?
        let double: Double?
        let bool: Bool?

        init(_ text: String) {
            self.text = text
            number = canonicalNumber(text)
            double = number.flatMap { Double($0) }
            let lower = text.lowercased()
            bool = lower == "t" || lower == "true" ? true : lower == "f" || lower == "false" ? false : nil
            uuid = isUUID(text) ? lower : nil
            json = looksLikeJSON(text) ? canonicalJSON(text) : nil
            moment = FilterMoment(text)
        }
    }

    /// Derived from `op` and `values`, so it takes no part in equality.
    struct Prepared: Sendable, Hashable {
        static func == (lhs: Prepared, rhs: Prepared) -> Bool { true }
        func hash(into hasher: inout Hasher) {}

        var literals: [Literal]
        /// The `like`/`ilike` or `match`/`imatch` pattern compiled; nil for other operators and invalid patterns.
        var pattern: LinearRegex?
        /// Why the pattern was refused.
        var patternError: LinearRegex.SyntaxError?

        init(op: Operator, values: [String]) {
            literals = values.map(Literal.init)
            guard let text = values.first, [.like, .ilike, .match, .imatch].contains(op) else { return }
            do {
                pattern =
                    op == .like || op == .ilike
                    ? try LinearRegex(likePattern: text, caseInsensitive: op == .ilike) : try LinearRegex(text, caseInsensitive: op == .imatch)
            } catch {
                patternError = error
            }
        }
    }
}

// MARK: - Value text

extension ChangeFilter {
    /// The plain decimal form of a number written the way Postgres reads one (`[+-]digits[.digits][e[+-]digits]`,
    /// blanks around): no exponent, no leading or trailing zeros, `0` for zero. nil if the text is no such number.
    static func canonicalNumber(_ text: String) -> String? {
        var bytes = Array(text.utf8)[...]
        while bytes.first?.isASCIIBlankByte == true { bytes = bytes.dropFirst() }
        while bytes.last?.isASCIIBlankByte == true { bytes = bytes.dropLast() }
        let negative = bytes.first == Ascii.minus
        if negative || bytes.first == Ascii.plus { bytes = bytes.dropFirst() }
        let integer = bytes.prefix(while: \.isASCIIDigitByte)
        bytes = bytes.dropFirst(integer.count)
        var fraction = ArraySlice<UInt8>()
        if bytes.first == Ascii.dot {
            fraction = bytes.dropFirst().prefix(while: \.isASCIIDigitByte)
            bytes = bytes.dropFirst(1 + fraction.count)
        }
        guard !integer.isEmpty || !fraction.isEmpty else { return nil }
        var exponent = 0
        if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
            var rest = bytes.dropFirst()
            let exponentNegative = rest.first == Ascii.minus
            if exponentNegative || rest.first == Ascii.plus { rest = rest.dropFirst() }
            let digits = rest.prefix(while: \.isASCIIDigitByte)
            guard (1...4).contains(digits.count), let value = Int(string(digits)), value <= 1000 else { return nil }
            exponent = exponentNegative ? -value : value
            bytes = rest.dropFirst(digits.count)
        }
        guard bytes.isEmpty else { return nil }
        var digits = Array(integer) + Array(fraction)
        let leading = digits.prefix(while: { $0 == Ascii.zero }).count
        digits.removeFirst(leading)
        let point = integer.count + exponent - leading
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
        return string(out[...])
    }

    /// `8-4-4-4-12` hex digits, either case.
    static func isUUID(_ text: String) -> Bool {
        guard text.utf8.count == 36 else { return false }
        return text.utf8.enumerated().allSatisfy { index, byte in
            [8, 13, 18, 23].contains(index) ? byte == Ascii.minus : byte.isASCIIDigitByte || (97...102).contains(byte | 0x20)
        }
    }

    static func looksLikeJSON(_ text: String) -> Bool {
        ["{", "[", "\""].contains(text.first) || text == "true" || text == "false" || text == "null"
    }

    /// Compact JSON with object keys sorted, so equal `jsonb` values have equal text; nil if the text isn't JSON.
    static func canonicalJSON(_ text: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]),
            let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

/// ASCII bytes the filter grammar cares about.
private enum Ascii {
    static let (backslash, quote, dot, comma, equals) = (
        UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "."), UInt8(ascii: ","), UInt8(ascii: "=")
    )
    static let (openParen, closeParen, plus, minus, zero) = (
        UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "0")
    )
}

extension UInt8 {
    fileprivate var isASCIIDigitByte: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    fileprivate var isASCIIBlankByte: Bool { self == 0x20 || (0x09...0x0D).contains(self) }
}
