/// Turns pgoutput tuple values into `JSONValue`s the way Supabase Realtime presents records.
///
/// Text values, by column type OID:
/// - `int2`, `int4`, `int8`, `oid` → `.int`
/// - `float4`, `float8` → `.double`; `NaN` / `Infinity` / `-Infinity` → `.string`
/// - `numeric` → `.raw(text)` for a finite plain number (`-12.250`), else `.string` (`NaN`, `Infinity`)
/// - `bool` → `.bool`
/// - `json`, `jsonb` → `.raw(text)` (Postgres already validated it)
/// - everything else, including arrays (`{1,2,3}`) and timestamps exactly as Postgres prints them → `.string`
///
/// Binary values (only with the `binary` option) are decoded for the common scalar types to the same JSON as their
/// text form; other types become `.string("\\x<hex>")`.
public enum PgValueConverter {
    /// JSON for one tuple value; nil for an unchanged TOAST value (its contents were not sent).
    public static func json(_ value: PgOutputMessage.TupleValue, typeOID: UInt32) -> JSONValue? {
        switch value {
        case .null: return .null
        case .unchangedToast: return nil
        case .text(let text): return json(text: text, typeOID: typeOID)
        case .binary(let bytes): return PgBinaryValues.json(bytes, typeOID: typeOID)
        }
    }

    /// JSON for a column's text output.
    public static func json(text: String, typeOID: UInt32) -> JSONValue {
        switch typeOID {
        case PgTypeOID.int2, PgTypeOID.int4, PgTypeOID.int8, PgTypeOID.oid:
            if let value = Int64(text) { return .int(value) }
            return .string(text)
        case PgTypeOID.float4, PgTypeOID.float8:
            if let value = Double(text), value.isFinite { return .double(value) }
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
            return text.isEmpty ? .string(text) : .raw(text)
        default:
            return .string(text)
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
