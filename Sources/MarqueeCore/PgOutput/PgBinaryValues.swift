/// Converts the binary send format of common built-in types to the JSON `PgValueConverter` gives their text form.
///
/// Only used when the slot is read with the `binary` option. Arrays (whose binary form names the element type) and
/// composites described by the catalog are converted element by element. Types without a decoder here (`money`,
/// `inet`, ranges, user-defined base types, ...), and values whose length does not fit their type, become the hex
/// string `\x...` (the `bytea` text form) instead of failing: the feed reads text for that reason.
enum PgBinaryValues {
    static func json(_ bytes: [UInt8], typeOID: UInt32, catalog: PgTypeCatalog = .builtIn) -> JSONValue {
        json(bytes[...], typeOID: typeOID, catalog: catalog, depth: 0)
    }

    static func json(_ bytes: ArraySlice<UInt8>, typeOID: UInt32, catalog: PgTypeCatalog, depth: Int) -> JSONValue {
        let bytes = Array(bytes)
        if let value = decode(bytes, typeOID: typeOID, catalog: catalog, depth: depth) { return value }
        return .string(hex(bytes))
    }

    private static func decode(_ bytes: [UInt8], typeOID: UInt32, catalog: PgTypeCatalog, depth: Int) -> JSONValue? {
        switch typeOID {
        case PgTypeOID.bool:
            guard bytes.count == 1 else { return nil }
            return .bool(bytes[0] != 0)
        case PgTypeOID.int2:
            guard bytes.count == 2 else { return nil }
            return .int(Int64(Int16(truncatingIfNeeded: integer(bytes))))
        case PgTypeOID.int4:
            guard bytes.count == 4 else { return nil }
            return .int(Int64(Int32(truncatingIfNeeded: integer(bytes))))
        case PgTypeOID.oid:
            guard bytes.count == 4 else { return nil }
            return .string(String(integer(bytes)))
        case PgTypeOID.int8:
            guard bytes.count == 8 else { return nil }
            return .int(Int64(bitPattern: integer(bytes)))
        case PgTypeOID.float4, PgTypeOID.float8:
            let value: Double
            let shortest: String
            if bytes.count == 4, typeOID == PgTypeOID.float4 {
                // the shortest decimal of the float4, as Postgres prints it: 0.1 stays 0.1, not 0.10000000149011612
                let float = Float(bitPattern: UInt32(truncatingIfNeeded: integer(bytes)))
                value = Double(float)
                shortest = float.description
            } else if bytes.count == 8, typeOID == PgTypeOID.float8 {
                value = Double(bitPattern: integer(bytes))
                shortest = value.description
            } else {
                return nil
            }
            if value.isFinite, let decimal = PgNumberText.decimal(fromFloatText: shortest) { return .raw(decimal) }
            return .string(value.isNaN ? "NaN" : value < 0 ? "-Infinity" : "Infinity")
        case PgTypeOID.text, PgTypeOID.varchar, PgTypeOID.bpchar, PgTypeOID.name, PgTypeOID.char:
            return .string(String(decoding: bytes, as: UTF8.self))
        case PgTypeOID.json:
            return PgValueConverter.json(text: String(decoding: bytes, as: UTF8.self), typeOID: typeOID)
        case PgTypeOID.jsonb:
            guard bytes.first == 1 else { return nil }
            return PgValueConverter.json(text: String(decoding: bytes.dropFirst(), as: UTF8.self), typeOID: typeOID)
        case PgTypeOID.uuid:
            guard bytes.count == 16 else { return nil }
            let hexText = hex(bytes).dropFirst(2)
            var text = ""
            for (index, character) in hexText.enumerated() {
                if index == 8 || index == 12 || index == 16 || index == 20 { text += "-" }
                text.append(character)
            }
            return .string(text)
        case PgTypeOID.bytea:
            return .string(hex(bytes))
        case PgTypeOID.date:
            guard bytes.count == 4 else { return nil }
            let days = Int64(Int32(truncatingIfNeeded: integer(bytes)))
            if days == Int64(Int32.max) { return .string("infinity") }
            if days == Int64(Int32.min) { return .string("-infinity") }
            let civil = PgCivilTime(unixDays: days + 10_957)
            return .string(dateText(civil))
        case PgTypeOID.time:
            guard bytes.count == 8 else { return nil }
            let micros = Int64(bitPattern: integer(bytes))
            guard (0...86_400_000_000).contains(micros) else { return nil }
            let civil = PgCivilTime(unixMicroseconds: micros)
            return .string(micros == 86_400_000_000 ? "24:00:00" : civil.timeText + PgDateTimeText.fraction(civil.microsecond))
        case PgTypeOID.timestamp, PgTypeOID.timestamptz:
            guard bytes.count == 8 else { return nil }
            let micros = Int64(bitPattern: integer(bytes))
            if micros == Int64.max { return .string("infinity") }
            if micros == Int64.min { return .string("-infinity") }
            let timestamp = PgTimestamp(microsecondsSincePostgresEpoch: micros)
            let zoned = typeOID == PgTypeOID.timestamptz
            let text = PgDateTimeText.isoText(unixMicroseconds: timestamp.unixMicroseconds, zone: zoned)
            return .string(zoned ? PgDateTimeText.timestamptz(text) : PgDateTimeText.timestamp(text))
        case PgTypeOID.timetz:
            guard bytes.count == 12 else { return nil }
            let micros = Int64(bitPattern: integer(Array(bytes[0..<8])))
            let secondsWest = Int64(Int32(truncatingIfNeeded: integer(Array(bytes[8..<12]))))
            guard (0...86_400_000_000).contains(micros) else { return nil }
            let civil = PgCivilTime(unixMicroseconds: micros)
            let time = micros == 86_400_000_000 ? "24:00:00" : civil.timeText + PgDateTimeText.fraction(civil.microsecond)
            return .string(time + zoneText(eastSeconds: -secondsWest))
        case PgTypeOID.interval:
            guard bytes.count == 16 else { return nil }
            let micros = Int64(bitPattern: integer(Array(bytes[0..<8])))
            let days = Int64(Int32(truncatingIfNeeded: integer(Array(bytes[8..<12]))))
            let months = Int64(Int32(truncatingIfNeeded: integer(Array(bytes[12..<16]))))
            return .string(intervalText(months: months, days: days, micros: micros))
        case PgTypeOID.numeric:
            guard let text = numericText(bytes) else { return nil }
            return PgValueConverter.json(text: text, typeOID: typeOID)
        default:
            break
        }
        guard depth < 32, let kind = catalog.kind(of: typeOID) else { return nil }
        switch kind {
        case .text: return nil
        case .domain(let base): return decode(bytes, typeOID: base, catalog: catalog, depth: depth + 1)
        case .array, .vector: return array(bytes, catalog: catalog, depth: depth + 1)
        case .composite(let fields): return record(bytes, fields: fields, catalog: catalog, depth: depth + 1)
        }
    }

    /// `array_send`: ndim, has-nulls flag, element type, (size, lower bound) per dimension, then (length, bytes) per
    /// element, length -1 for NULL.
    private static func array(_ bytes: [UInt8], catalog: PgTypeCatalog, depth: Int) -> JSONValue? {
        var reader = PgOutputByteReader(bytes)
        guard let dimensions = try? reader.readInt32("dimensions"), (0...6).contains(dimensions),
            (try? reader.readInt32("flags")) != nil, let element = try? reader.readUInt32("element type")
        else { return nil }
        var sizes: [Int] = []
        for _ in 0..<dimensions {
            guard let size = try? reader.readInt32("size"), size >= 0, (try? reader.readInt32("lower bound")) != nil else { return nil }
            sizes.append(Int(size))
        }
        func level(_ index: Int) -> JSONValue? {
            var items: [JSONValue] = []
            for _ in 0..<sizes[index] {
                if index + 1 < sizes.count {
                    guard let nested = level(index + 1) else { return nil }
                    items.append(nested)
                } else {
                    guard let length = try? reader.readInt32("element length") else { return nil }
                    if length < 0 {
                        items.append(.null)
                    } else {
                        guard let value = try? reader.readBytes(Int(length), "element") else { return nil }
                        items.append(json(value[...], typeOID: element, catalog: catalog, depth: depth))
                    }
                }
            }
            return .array(items)
        }
        guard !sizes.isEmpty else { return .array([]) }
        guard let value = level(0), reader.isAtEnd else { return nil }
        return value
    }

    /// `record_send`: field count, then (type OID, length, bytes) per field, length -1 for NULL.
    private static func record(_ bytes: [UInt8], fields: [PgTypeCatalog.Field], catalog: PgTypeCatalog, depth: Int) -> JSONValue? {
        var reader = PgOutputByteReader(bytes)
        guard let count = try? reader.readInt32("fields"), Int(count) == fields.count else { return nil }
        var entries: [(key: String, value: JSONValue)] = []
        for field in fields {
            guard let type = try? reader.readUInt32("field type"), let length = try? reader.readInt32("field length") else { return nil }
            if length < 0 {
                entries.append((key: field.name, value: .null))
            } else {
                guard let value = try? reader.readBytes(Int(length), "field") else { return nil }
                entries.append((key: field.name, value: json(value[...], typeOID: type, catalog: catalog, depth: depth)))
            }
        }
        return reader.isAtEnd ? .object(JSONObject(entries)) : nil
    }

    /// `+05:30`, `-03:30`, `+00`: a zone offset as Postgres prints it in ISO style.
    static func zoneText(eastSeconds: Int64) -> String {
        let magnitude = abs(eastSeconds)
        var text = (eastSeconds < 0 ? "-" : "+") + PgFormat.pad(magnitude / 3600, 2)
        if magnitude % 3600 != 0 { text += ":" + PgFormat.pad(magnitude / 60 % 60, 2) }
        if magnitude % 60 != 0 { text += ":" + PgFormat.pad(magnitude % 60, 2) }
        return text
    }

    /// An interval as Postgres prints it with `IntervalStyle` postgres: `1 year 2 mons -3 days +04:05:06.7`.
    static func intervalText(months: Int64, days: Int64, micros: Int64) -> String {
        var parts: [String] = []
        var previousNegative = false
        var isZero = true
        for (value, unit) in [(months / 12, "year"), (months % 12, "mon"), (days, "day")] where value != 0 {
            parts.append((previousNegative && value > 0 ? "+" : "") + "\(value) \(unit)" + (value == 1 ? "" : "s"))
            previousNegative = value < 0
            isZero = false
        }
        if isZero || micros != 0 {
            let magnitude = micros.magnitude
            let sign = micros < 0 ? "-" : previousNegative ? "+" : ""
            let hours = magnitude / 3_600_000_000
            let clock = PgFormat.pad(Int64(magnitude / 60_000_000 % 60), 2) + ":" + PgFormat.pad(Int64(magnitude / 1_000_000 % 60), 2)
            parts.append(sign + PgFormat.pad(Int64(hours), 2) + ":" + clock + PgDateTimeText.fraction(Int64(magnitude % 1_000_000)))
        }
        return parts.joined(separator: " ")
    }

    /// Postgres `numeric` send format: ndigits, weight, sign, dscale (int16 each), then base-10000 digits.
    static func numericText(_ bytes: [UInt8]) -> String? {
        guard bytes.count >= 8 else { return nil }
        func word(_ index: Int) -> Int {
            Int(bytes[8 + index * 2]) << 8 | Int(bytes[8 + index * 2 + 1])
        }
        let count = Int(UInt16(bytes[0]) << 8 | UInt16(bytes[1]))
        let weight = Int(Int16(bitPattern: UInt16(bytes[2]) << 8 | UInt16(bytes[3])))
        let sign = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        let scale = Int(UInt16(bytes[6]) << 8 | UInt16(bytes[7]))
        switch sign {
        case 0xC000: return "NaN"
        case 0xD000: return "Infinity"
        case 0xF000: return "-Infinity"
        case 0x0000, 0x4000: break
        default: return nil
        }
        guard bytes.count == 8 + count * 2, scale <= 0x3FFF else { return nil }
        var digits: [Int] = []
        for index in 0..<count {
            let digit = word(index)
            guard digit < 10_000 else { return nil }
            digits.append(digit)
        }
        func digit(at index: Int) -> Int { digits.indices.contains(index) ? digits[index] : 0 }
        var text = sign == 0x4000 ? "-" : ""
        if weight < 0 {
            text += "0"
        } else {
            text += String(digit(at: 0))
            for index in stride(from: 1, through: weight, by: 1) { text += PgFormat.pad(Int64(digit(at: index)), 4) }
        }
        if scale > 0 {
            var fractionText = ""
            var group = 1
            while fractionText.count < scale {
                fractionText += PgFormat.pad(Int64(digit(at: weight + group)), 4)
                group += 1
            }
            text += "." + fractionText.prefix(scale)
        }
        return text
    }

    private static func dateText(_ civil: PgCivilTime) -> String {
        if civil.year > 0 { return civil.dateText }
        var bc = civil
        bc.year = 1 - civil.year
        return bc.dateText + " BC"
    }

    private static func integer(_ bytes: [UInt8]) -> UInt64 {
        bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        out.reserveCapacity(2 + bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
