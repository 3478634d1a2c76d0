/// Turns PostgreSQL's ISO text form of `timestamp` and `timestamptz` (`DateStyle` ISO) into the form `to_jsonb` gives
/// them, XML Schema style: `2026-12-03T19:52:55.304141` and, for `timestamptz`, in UTC: `2026-12-03T19:52:55.304141+00:00`.
///
/// `timestamptz` is printed by Postgres in the session's `TimeZone` (`2026-12-04 01:22:55.304141+05:30`); it is moved
/// to UTC here, so clients see one form whatever the reading session's zone was, as they do from Supabase, whose
/// databases run in UTC. The fraction is kept digit for digit (offsets are whole seconds). `infinity`, `-infinity`
/// and BC dates (`0044-03-15T10:00:00+00:00 BC`) come out as `to_jsonb` writes them. Text of any other shape (another
/// `DateStyle`) is returned unchanged.
enum PgDateTimeText {
    static func timestamp(_ text: String) -> String {
        guard let parts = Parts(text, withZone: false) else { return text }
        return parts.render(zone: "")
    }

    static func timestamptz(_ text: String) -> String {
        guard var parts = Parts(text, withZone: true) else { return text }
        if parts.offsetSeconds != 0 { parts.shift(bySeconds: -parts.offsetSeconds) }
        return parts.render(zone: "+00:00")
    }

    /// The text form Postgres prints for a UTC instant (`2026-12-03 19:52:55.304141+00`), as in a session whose
    /// `TimeZone` is UTC; `zone` false prints a `timestamp`.
    static func isoText(unixMicroseconds: Int64, zone: Bool) -> String {
        let civil = PgCivilTime(unixMicroseconds: unixMicroseconds)
        var parts = Parts(civil: civil)
        parts.fraction = fraction(civil.microsecond)
        return parts.dateText + " " + parts.timeText + (zone ? "+00" : "") + (parts.isBC ? " BC" : "")
    }

    /// `.123456` with trailing zeros removed; empty for whole seconds.
    static func fraction(_ microsecond: Int64) -> String {
        guard microsecond > 0 else { return "" }
        var digits = PgFormat.pad(microsecond, 6)
        while digits.hasSuffix("0") { digits.removeLast() }
        return "." + digits
    }

    struct Parts {
        /// Astronomical year (1 BC is 0).
        var year: Int64
        var month: Int64
        var day: Int64
        var hour: Int64
        var minute: Int64
        var second: Int64
        /// `""` or `.ddd`, as printed.
        var fraction: String
        var offsetSeconds: Int64 = 0

        var isBC: Bool { year <= 0 }

        init(civil: PgCivilTime) {
            year = civil.year
            month = civil.month
            day = civil.day
            hour = civil.hour
            minute = civil.minute
            second = civil.second
            fraction = ""
        }

        /// `Y+-MM-DD HH:MM:SS[.f][±HH[:MM[:SS]]][ BC]`
        init?(_ text: String, withZone: Bool) {
            var body = Substring(text)
            var bc = false
            if body.hasSuffix(" BC") {
                bc = true
                body = body.dropLast(3)
            }
            let halves = body.split(separator: " ", omittingEmptySubsequences: false)
            guard halves.count == 2 else { return nil }
            let date = halves[0].split(separator: "-", omittingEmptySubsequences: false)
            guard date.count == 3, date[0].count >= 4, date[1].count == 2, date[2].count == 2,
                let year = Self.number(date[0]), let month = Self.number(date[1]), let day = Self.number(date[2])
            else { return nil }
            var time = halves[1]
            if withZone {
                guard let signIndex = time.lastIndex(where: { $0 == "+" || $0 == "-" }) else { return nil }
                let zone = time[time.index(after: signIndex)...].split(separator: ":", omittingEmptySubsequences: false)
                guard (1...3).contains(zone.count), zone.allSatisfy({ $0.count == 2 }) else { return nil }
                var seconds: Int64 = 0
                for (index, part) in zone.enumerated() {
                    guard let value = Self.number(part) else { return nil }
                    seconds += value * [3600, 60, 1][index]
                }
                offsetSeconds = time[signIndex] == "-" ? -seconds : seconds
                time = time[..<signIndex]
            }
            var fraction = ""
            if let dot = time.firstIndex(of: ".") {
                fraction = String(time[dot...])
                guard fraction.count > 1, Self.number(fraction.dropFirst()) != nil else { return nil }
                time = time[..<dot]
            }
            let clock = time.split(separator: ":", omittingEmptySubsequences: false)
            guard clock.count == 3, clock.allSatisfy({ $0.count == 2 }), let hour = Self.number(clock[0]),
                let minute = Self.number(clock[1]), let second = Self.number(clock[2])
            else { return nil }
            self.year = bc ? 1 - year : year
            self.month = month
            self.day = day
            self.hour = hour
            self.minute = minute
            self.second = second
            self.fraction = fraction
        }

        mutating func shift(bySeconds delta: Int64) {
            let days = PgCivilTime.unixDays(year: year, month: month, day: day)
            let (shiftedDays, secondOfDay) = PgFormat.floorDivMod(days * 86_400 + hour * 3600 + minute * 60 + second + delta, 86_400)
            var civil = PgCivilTime(unixDays: shiftedDays)
            civil.hour = secondOfDay / 3600
            civil.minute = secondOfDay / 60 % 60
            civil.second = secondOfDay % 60
            let fraction = self.fraction
            self = Parts(civil: civil)
            self.fraction = fraction
        }

        var dateText: String {
            PgFormat.pad(isBC ? 1 - year : year, 4) + "-" + PgFormat.pad(month, 2) + "-" + PgFormat.pad(day, 2)
        }

        var timeText: String { PgFormat.pad(hour, 2) + ":" + PgFormat.pad(minute, 2) + ":" + PgFormat.pad(second, 2) + fraction }

        func render(zone: String) -> String { dateText + "T" + timeText + zone + (isBC ? " BC" : "") }

        private static func number(_ text: Substring) -> Int64? {
            guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
            return Int64(text)
        }
    }
}
