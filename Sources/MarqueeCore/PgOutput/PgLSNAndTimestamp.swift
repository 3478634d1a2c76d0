import Foundation

/// A PostgreSQL write-ahead-log position (`pg_lsn`), printed the way Postgres prints it: `16/B374D848`.
public struct PgLSN: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    /// Parses Postgres' text form `XXXXXXXX/XXXXXXXX` (the `lsn` column of `pg_logical_slot_*_changes`).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
            let high = UInt32(parts[0], radix: 16), let low = UInt32(parts[1], radix: 16)
        else { return nil }
        value = UInt64(high) << 32 | UInt64(low)
    }

    public static let invalid = PgLSN(0)

    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func < (lhs: PgLSN, rhs: PgLSN) -> Bool { lhs.value < rhs.value }
}

/// A Postgres `timestamptz` on the wire: microseconds since 2000-01-01 00:00:00 UTC.
public struct PgTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Seconds from the Unix epoch to the Postgres epoch (2000-01-01T00:00:00Z).
    public static let postgresEpochUnixSeconds: Int64 = 946_684_800

    public var microsecondsSincePostgresEpoch: Int64

    public init(microsecondsSincePostgresEpoch: Int64) {
        self.microsecondsSincePostgresEpoch = microsecondsSincePostgresEpoch
    }

    public init(unixMicroseconds: Int64) {
        microsecondsSincePostgresEpoch = unixMicroseconds &- PgTimestamp.postgresEpochUnixSeconds &* 1_000_000
    }

    public var unixMicroseconds: Int64 {
        microsecondsSincePostgresEpoch &+ PgTimestamp.postgresEpochUnixSeconds &* 1_000_000
    }

    public var date: Date {
        Date(timeIntervalSince1970: Double(unixMicroseconds) / 1_000_000)
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, see `formatCommitTimestamp(_:)`.
    public var description: String { formatCommitTimestamp(self) }

    public static func < (lhs: PgTimestamp, rhs: PgTimestamp) -> Bool {
        lhs.microsecondsSincePostgresEpoch < rhs.microsecondsSincePostgresEpoch
    }
}

/// Formats a commit timestamp the way Supabase Realtime reports `commit_timestamp`:
/// ISO-8601 in UTC with exactly three fractional digits (truncated, like Postgres' `to_char(..., 'MS')`) and a `Z`,
/// e.g. `2024-03-05T12:34:56.789Z`. Pure integer arithmetic; no `DateFormatter`, safe from any thread.
public func formatCommitTimestamp(_ timestamp: PgTimestamp) -> String {
    let parts = PgCivilTime(unixMicroseconds: timestamp.unixMicroseconds)
    return parts.dateText + "T" + parts.timeText + "." + PgFormat.pad(parts.microsecond / 1000, 3) + "Z"
}

/// Formats a `Date` like `formatCommitTimestamp(_:)`, truncated to the millisecond.
public func formatCommitTimestamp(_ date: Date) -> String {
    let micros = (date.timeIntervalSince1970 * 1_000_000).rounded(.down)
    guard micros.isFinite, abs(micros) < 9.2e18 else { return "invalid date" }
    return formatCommitTimestamp(PgTimestamp(unixMicroseconds: Int64(micros)))
}

/// A proleptic-Gregorian UTC breakdown of a microsecond instant (Howard Hinnant's `civil_from_days`).
struct PgCivilTime {
    var year: Int64
    var month: Int64
    var day: Int64
    var hour: Int64
    var minute: Int64
    var second: Int64
    var microsecond: Int64

    init(unixMicroseconds: Int64) {
        let (days, microOfDay) = PgFormat.floorDivMod(unixMicroseconds, 86_400_000_000)
        self.init(unixDays: days)
        hour = microOfDay / 3_600_000_000
        minute = microOfDay / 60_000_000 % 60
        second = microOfDay / 1_000_000 % 60
        microsecond = microOfDay % 1_000_000
    }

    init(unixDays: Int64) {
        let z = unixDays + 719_468
        let era = PgFormat.floorDivMod(z, 146_097).0
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        day = dayOfYear - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        hour = 0
        minute = 0
        second = 0
        microsecond = 0
    }

    /// Days since 1970-01-01 of a proleptic-Gregorian date (astronomical year; Howard Hinnant's `days_from_civil`).
    static func unixDays(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = PgFormat.floorDivMod(y, 400).0
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// `YYYY-MM-DD` (astronomical year numbering; callers handle BC).
    var dateText: String { PgFormat.pad(year, 4) + "-" + PgFormat.pad(month, 2) + "-" + PgFormat.pad(day, 2) }
    var timeText: String { PgFormat.pad(hour, 2) + ":" + PgFormat.pad(minute, 2) + ":" + PgFormat.pad(second, 2) }
}

enum PgFormat {
    /// Floor division and the matching non-negative remainder (for `b > 0`).
    static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let quotient = a / b
        let remainder = a % b
        return remainder < 0 ? (quotient - 1, remainder + b) : (quotient, remainder)
    }

    /// Zero-pads the decimal form of `value` to `width` digits.
    static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value.magnitude)
        let padded = digits.count < width ? String(repeating: "0", count: width - digits.count) + digits : digits
        return value < 0 ? "-" + padded : padded
    }
}
