import Foundation
import MarqueeCore

/// Decodes a `postgres_changes` `record` or `old_record` (or a join-snapshot row) into a `Decodable` model of your own.
///
/// Values arrive in the forms `to_jsonb` gives them (docs/realtime-protocol.md, "Column values"), and this reads them
/// that way: numbers as numbers (`numeric` into `Decimal` keeps every digit), `json`/`jsonb` columns as nested values,
/// arrays as arrays, and dates and timestamps into `Date`:
/// - `timestamptz`: `2026-12-03T19:52:55.304141+00:00` (any offset, or `Z`);
/// - `timestamp` (no zone): `2026-12-03T19:52:55.304141`, read as UTC;
/// - `date`: `2026-12-03`, midnight UTC;
/// - `infinity` / `-infinity`: `Date.distantFuture` / `Date.distantPast`.
///
/// ```swift
/// struct TicketRow: Decodable { let id: UUID; let available: Int; let updated_at: Date }
/// let row = try RecordDecoder().decode(TicketRow.self, from: record)
/// ```
public struct RecordDecoder: Sendable {
    public var keyDecodingStrategy: KeyStrategy

    /// How record keys (column names) map to property names.
    public enum KeyStrategy: Sendable {
        case useDefaultKeys
        /// `updated_at` → `updatedAt`
        case convertFromSnakeCase
    }

    public init(keyDecodingStrategy: KeyStrategy = .useDefaultKeys) {
        self.keyDecodingStrategy = keyDecodingStrategy
    }

    public func decode<T: Decodable>(_ type: T.Type, from record: JSONObject) throws -> T {
        try decode(type, from: JSONValue.object(record))
    }

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        let decoder = JSONDecoder()
        switch keyDecodingStrategy {
        case .useDefaultKeys: decoder.keyDecodingStrategy = .useDefaultKeys
        case .convertFromSnakeCase: decoder.keyDecodingStrategy = .convertFromSnakeCase
        }
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = Self.date(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "'\(text)' is not a date or timestamp as to_jsonb writes them (2026-12-03T19:52:55.304141+00:00)"
                )
            }
            return date
        }
        return try decoder.decode(type, from: Data(value.serialized().utf8))
    }

    /// A `date`, `timestamp` or `timestamptz` in its `to_jsonb` form; nil for anything else (BC dates included).
    public static func date(_ text: String) -> Date? {
        switch text {
        case "infinity": return .distantFuture
        case "-infinity": return .distantPast
        default: break
        }
        var scanner = Substring(text).utf8[...]
        func number(_ digits: Int, minimum: Int? = nil) -> Int64? {
            let run = scanner.prefix(while: { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
            guard run.count == digits || (minimum.map { run.count >= $0 } ?? false) else { return nil }
            scanner = scanner.dropFirst(run.count)
            return Int64(String(decoding: run, as: UTF8.self))
        }
        func expect(_ character: Character) -> Bool {
            guard scanner.first == character.asciiValue else { return false }
            scanner = scanner.dropFirst()
            return true
        }
        guard let year = number(4, minimum: 4), expect("-"), let month = number(2), expect("-"), let day = number(2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var seconds = Double(Self.unixDays(year: year, month: month, day: day)) * 86_400
        if scanner.isEmpty { return Date(timeIntervalSince1970: seconds) }
        guard expect("T"), let hour = number(2), expect(":"), let minute = number(2), expect(":"), let second = number(2),
            hour <= 24, minute < 60, second < 61
        else { return nil }
        seconds += Double(hour * 3600 + minute * 60 + second)
        if expect(".") {
            let digits = scanner.prefix(while: { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
            guard !digits.isEmpty, let fraction = Double("0." + String(decoding: digits, as: UTF8.self)) else { return nil }
            scanner = scanner.dropFirst(digits.count)
            seconds += fraction
        }
        if scanner.isEmpty { return Date(timeIntervalSince1970: seconds) }  // timestamp without zone: UTC
        if expect("Z") { return scanner.isEmpty ? Date(timeIntervalSince1970: seconds) : nil }
        guard let sign = scanner.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") else { return nil }
        scanner = scanner.dropFirst()
        guard let offsetHours = number(2) else { return nil }
        var offset = offsetHours * 3600
        if expect(":") {
            guard let offsetMinutes = number(2) else { return nil }
            offset += offsetMinutes * 60
            if expect(":") {
                guard let offsetSeconds = number(2) else { return nil }
                offset += offsetSeconds
            }
        }
        guard scanner.isEmpty else { return nil }
        return Date(timeIntervalSince1970: seconds - Double(sign == UInt8(ascii: "+") ? offset : -offset))
    }
    /// Days from 1970-01-01 to a proleptic-Gregorian date (Howard Hinnant's `days_from_civil`).
    private static func unixDays(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
