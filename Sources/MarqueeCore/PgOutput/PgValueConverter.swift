/// Turns pgoutput tuple values into the JSON `to_jsonb(value)` gives, which is how Supabase Realtime builds the values
/// of `record` and `old_record` (its `realtime.cast`: `to_jsonb(text::type)`).
///
/// Text values (the type's output function, read in a session with `DateStyle` ISO, `IntervalStyle` postgres,
/// `bytea_output` hex and `extra_float_digits` 1, see `DatabaseURL`), by column type:
/// - `int2`, `int4`, `int8` → number; `oid`, `xid` and other integer-like types → string (as `to_jsonb` does)
/// - `numeric` → number, exactly as printed (`12.50` keeps its scale); `NaN`, `Infinity`, `-Infinity` → string
/// - `float4`, `float8` → number in `numeric` form (`1e+100` → 1 followed by 100 zeros); `NaN`, `±Infinity` → string
/// - `bool` → `true` / `false`; `json`, `jsonb` → the JSON itself
/// - `timestamp` → `"2026-12-03T19:52:55.304141"`; `timestamptz` → `"2026-12-03T19:52:55.304141+00:00"` (moved to UTC)
/// - arrays (built-in, or described by the `PgTypeCatalog`) → JSON arrays, nested, with `null` elements, each element
///   converted by the element type; `int2vector` / `oidvector` → arrays
/// - domains → as their base type; composite types → objects of their fields (when the catalog describes them)
/// - everything else (`date`, `time`, `timetz`, `interval`, `bytea` as `\x…`, `uuid`, text types, enums, ranges,
///   `inet`, `cidr`, `money`, `xml`, types the catalog does not know) → the text as a string, as `to_jsonb` gives it
///
/// Binary values (only with the `binary` option) are decoded for the common built-in types, and arrays of them, to the
/// same JSON; other types become the hex string `\x…`.
public enum PgValueConverter {
    /// JSON for one tuple value; nil for an unchanged TOAST value (its contents were not sent).
    public static func json(_ value: PgOutputMessage.TupleValue, typeOID: UInt32, catalog: PgTypeCatalog = .builtIn) -> JSONValue? {
        switch value {
        case .null: return .null
        case .unchangedToast: return nil
        case .text(let text): return json(text: text, typeOID: typeOID, catalog: catalog)
        case .binary(let bytes): return PgBinaryValues.json(bytes, typeOID: typeOID, catalog: catalog)
        }
    }

    /// JSON for a column's text output.
    public static func json(text: String, typeOID: UInt32, catalog: PgTypeCatalog = .builtIn) -> JSONValue {
        json(text: text, typeOID: typeOID, catalog: catalog, depth: 0)
    }

    static func json(text: String, typeOID: UInt32, catalog: PgTypeCatalog, depth: Int) -> JSONValue {
        switch typeOID {
        case PgTypeOID.int2, PgTypeOID.int4, PgTypeOID.int8:
            if let value = Int64(text) { return .int(value) }
            return .string(text)
        case PgTypeOID.float4, PgTypeOID.float8:
            if let decimal = PgNumberText.decimal(fromFloatText: text) { return .raw(decimal) }
            return .string(text)
        case PgTypeOID.numeric:
            return isPlainJSONNumber(text) ? .raw(text) : .string(text)
        case PgTypeOID.bool:
            switch text {
            case "t", "true": return .bool(true)
            case "f", "false": return .bool(false)
            default: return .string(text)
            }
        case PgTypeOID.json, PgTypeOID.jsonb:
            // Postgres validated it; sent as it is (to_jsonb would reformat it, which changes no JSON value)
            return text.isEmpty ? .string(text) : .raw(text)
        case PgTypeOID.timestamp:
            return .string(PgDateTimeText.timestamp(text))
        case PgTypeOID.timestamptz:
            return .string(PgDateTimeText.timestamptz(text))
        default:
            break
        }
        guard depth < 32, let kind = catalog.kind(of: typeOID) else { return .string(text) }
        switch kind {
        case .text:
            return .string(text)
        case .domain(let base):
            return json(text: text, typeOID: base, catalog: catalog, depth: depth + 1)
        case .array(let element, let delimiter):
            guard let nodes = PgArrayLiteral.parse(text, delimiter: delimiter) else { return .string(text) }
            return .array(nodes.map { json($0, elementOID: element, catalog: catalog, depth: depth + 1) })
        case .vector(let element):
            let items = text.split(separator: " ")
            return .array(items.map { json(text: String($0), typeOID: element, catalog: catalog, depth: depth + 1) })
        case .composite(let fields):
            guard let values = PgArrayLiteral.parseRecord(text), values.count == fields.count else { return .string(text) }
            return .object(
                JSONObject(
                    zip(fields, values).map { field, value in
                        (key: field.name, value: value.map { json(text: $0, typeOID: field.typeOID, catalog: catalog, depth: depth + 1) } ?? .null)
                    }))
        }
    }

    private static func json(_ node: PgArrayLiteral.Node, elementOID: UInt32, catalog: PgTypeCatalog, depth: Int) -> JSONValue {
        switch node {
        case .element(nil): return .null
        case .element(let text?): return json(text: text, typeOID: elementOID, catalog: catalog, depth: depth)
        case .array(let items): return .array(items.map { json($0, elementOID: elementOID, catalog: catalog, depth: depth) })
        }
    }

    /// Whether `text` is a JSON number without exponent: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, the shape of Postgres' finite
    /// `numeric` output.
    static func isPlainJSONNumber(_ text: String) -> Bool {
        var utf8 = text.utf8[...]
        if utf8.first == UInt8(ascii: "-") { utf8 = utf8.dropFirst() }
        let integer = utf8.prefix(while: isDigit)
        guard let first = integer.first, first != UInt8(ascii: "0") || integer.count == 1 else { return false }
        utf8 = utf8.dropFirst(integer.count)
        if utf8.isEmpty { return true }
        guard utf8.first == UInt8(ascii: ".") else { return false }
        let fraction = utf8.dropFirst()
        return !fraction.isEmpty && fraction.allSatisfy(isDigit)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}
