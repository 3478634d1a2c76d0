/// A date or timestamp in a filter or a record value, so that `updated_at=gte.2026-12-03 19:00:00+00` compares by
/// time with a record's `"2026-12-03T19:52:55.304141+00:00"`, as Supabase compares after casting the filter value to the
/// column's type, instead of by text (where `T` sorts after a space).
///
/// Reads `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM[:SS[.ffffff]]`, an optional zone (`Z`,
/// `±HH`, `±HH:MM`, `±HH:MM:SS`, `±HHMM`) and an optional ` BC`; and `infinity` / `-infinity`. Two moments with zones
/// compare as instants; otherwise by their wall-clock fields (a filter on a `timestamp` column ignores the literal's
/// zone, as a cast to `timestamp` does). A literal without a zone is read as UTC, the sessions' zone.
struct FilterMoment: Sendable, Comparable {
    /// Seconds since 1970-01-01 of the wall-clock fields, the microseconds, and the zone offset east in seconds.
    let seconds: Int64
    let microseconds: Int64
    let offsetSeconds: Int64?

    init?(_ text: String) {
        switch text {
        case "infinity": (seconds, microseconds, offsetSeconds) = (Int64.max, 0, 0)
        case "-infinity": (seconds, microseconds, offsetSeconds) = (Int64.min, 0, 0)
        default:
            guard let parsed = Self.parse(Array(text.utf8)) else { return nil }
            (seconds, microseconds, offsetSeconds) = parsed
        }
    }

    /// The instant (or, without zones, the wall-clock time) to compare with `other`.
    func key(comparedWith other: FilterMoment) -> (Int64, Int64) {
        guard seconds != .max, seconds != .min, let offset = offsetSeconds, other.offsetSeconds != nil else { return (seconds, microseconds) }
        return (seconds - offset, microseconds)
    }

    static func < (lhs: FilterMoment, rhs: FilterMoment) -> Bool { lhs.key(comparedWith: rhs) < rhs.key(comparedWith: lhs) }
    static func == (lhs: FilterMoment, rhs: FilterMoment) -> Bool { lhs.key(comparedWith: rhs) == rhs.key(comparedWith: lhs) }

    private static func parse(_ bytes: [UInt8]) -> (Int64, Int64, Int64?)? {
        var index = 0
        func digits(_ count: Int? = nil, atLeast minimum: Int = 1) -> (Int64, Int)? {
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]), count.map({ index - start < $0 }) ?? true {
                index += 1
            }
            let length = index - start
            guard length >= (count ?? minimum), length <= 18 else { return nil }
            return (Int64(String(decoding: bytes[start..<index], as: UTF8.self)) ?? 0, length)
        }
        func take(_ character: Character) -> Bool {
            guard index < bytes.count, bytes[index] == character.asciiValue else { return false }
            index += 1
            return true
        }
        guard let (year, _) = digits(atLeast: 4), take("-"), let (month, _) = digits(2), take("-"), let (day, _) = digits(2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var secondOfDay: Int64 = 0
        var micros: Int64 = 0
        var offset: Int64?
        var bc = false
        if take("T") || take(" ") {
            if index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "B"), bytes[index + 1] == UInt8(ascii: "C"), index + 2 == bytes.count {
                bc = true
                index += 2
            } else {
                guard let (hour, _) = digits(2), take(":"), let (minute, _) = digits(2), hour <= 24, minute < 60 else { return nil }
                secondOfDay = hour * 3600 + minute * 60
                if take(":") {
                    guard let (second, _) = digits(2), second < 61 else { return nil }
                    secondOfDay += second
                    if take(".") {
                        guard let (fraction, length) = digits() else { return nil }
                        var value = fraction
                        if length > 6 {
                            for _ in 0..<(length - 6) { value /= 10 }
                        } else {
                            for _ in 0..<(6 - length) { value *= 10 }
                        }
                        micros = value
                    }
                }
                if take("Z") {
                    offset = 0
                } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                    let negative = bytes[index] == UInt8(ascii: "-")
                    index += 1
                    guard let (hours, length) = digits(atLeast: 2), length == 2 || length == 4 else { return nil }
                    var seconds = length == 4 ? hours / 100 * 3600 + hours % 100 * 60 : hours * 3600
                    if length == 2, take(":") {
                        guard let (minutes, _) = digits(2) else { return nil }
                        seconds += minutes * 60
                        if take(":") {
                            guard let (extra, _) = digits(2) else { return nil }
                            seconds += extra
                        }
                    }
                    offset = negative ? -seconds : seconds
                }
                if index + 3 == bytes.count, take(" "), take("B"), take("C") { bc = true }
            }
        }
        guard index == bytes.count else { return nil }
        let astronomicalYear = bc ? 1 - year : year
        let days = PgCivilTime.unixDays(year: astronomicalYear, month: month, day: day)
        return (days * 86_400 + secondOfDay, micros, offset)
    }
}
