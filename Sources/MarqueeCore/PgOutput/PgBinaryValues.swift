/// Converts the binary send format of common built-in types to the same JSON their text form would give.
///
/// Only used when the slot is read with the `binary` option. Timestamps are rendered the way Postgres prints them in a
/// session with `TimeZone = UTC` (`2024-03-05 12:34:56.789123+00`). Unknown types, and values whose length does not fit
/// their type, become the hex string `\x...` (the `bytea` text form) instead of failing.
enum PgBinaryValues {
    static func json(_ bytes: [UInt8], typeOID: UInt32) -> JSONValue {
        if let value = decode(bytes, typeOID: typeOID) { return value }
        return .string(hex(bytes))
    }

    private static func decode(_ bytes: [UInt8], typeOID: UInt32) -> JSONValue? {
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
            return .int(Int64(integer(bytes)))
        case PgTypeOID.int8:
            guard bytes.count == 8 else { return nil }
            return .int(Int64(bitPattern: integer(bytes)))
        case PgTypeOID.float4, PgTypeOID.float8:
            let value: Double
            if bytes.count == 4, typeOID == PgTypeOID.float4 {
                // Via the shortest decimal, as Postgres prints float4: 0.1 stays 0.1, not 0.10000000149011612.
                let float = Float(bitPattern: UInt32(truncatingIfNeeded: integer(bytes)))
                value = Double(float.description) ?? Double(float)
            } else if bytes.count == 8, typeOID == PgTypeOID.float8 {
                value = Double(bitPattern: integer(bytes))
            } else {
                return nil
            }
            if value.isFinite { return .double(value) }
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
            return .string(micros == 86_400_000_000 ? "24:00:00" : civil.timeText + fraction(civil.microsecond))
        case PgTypeOID.timestamp, PgTypeOID.timestamptz:
            guard bytes.count == 8 else { return nil }
            let micros = Int64(bitPattern: integer(bytes))
            if micros == Int64.max { return .string("infinity") }
            if micros == Int64.min { return .string("-infinity") }
            let timestamp = PgTimestamp(microsecondsSincePostgresEpoch: micros)
            let civil = PgCivilTime(unixMicroseconds: timestamp.unixMicroseconds)
            let zone = typeOID == PgTypeOID.timestamptz ? "+00" : ""
            var text = dateText(civil)
            let isBC = text.hasSuffix(" BC")
            if isBC { text.removeLast(3) }
            return .string(text + " " + civil.timeText + fraction(civil.microsecond) + zone + (isBC ? " BC" : ""))
        case PgTypeOID.numeric:
            guard let text = numericText(bytes) else { return nil }
            return PgValueConverter.json(text: text, typeOID: typeOID)
        default:
            return nil
        }
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

    /// `.123456` with trailing zeros removed; empty for whole seconds.
    private static func fraction(_ microsecond: Int64) -> String {
        guard microsecond > 0 else { return "" }
        var digits = PgFormat.pad(microsecond, 6)
        while digits.hasSuffix("0") { digits.removeLast() }
        return "." + digits
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
