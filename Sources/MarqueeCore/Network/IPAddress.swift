/// An IPv4 or IPv6 address, parsed from its text and printed in its canonical form (dotted quad; RFC 5952 for IPv6).
///
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports for an IPv4 peer) is its IPv4
/// address, so that the same client is one address whichever way it arrived.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: Sendable, Hashable {
        case v4
        case v6
    }

    public let family: Family
    /// The address's 128 bits as two words, most significant first; an IPv4 address is in the low 32 bits of `low`.
    public let high: UInt64
    public let low: UInt64

    public init(v4 value: UInt32) {
        family = .v4
        high = 0
        low = UInt64(value)
    }

    public init(v6 high: UInt64, _ low: UInt64) {
        if high == 0, low >> 32 == 0xffff {
            self.init(v4: UInt32(truncatingIfNeeded: low))
        } else {
            self.init(rawV6: high, low)
        }
    }

    /// How many bits the address has (32 or 128).
    public var bitWidth: Int { family == .v4 ? 32 : 128 }

    /// Parses `192.0.2.1`, `2001:db8::1`, `::ffff:192.0.2.1` (a zone such as `%eth0` is ignored); nil for anything
    /// else, including IPv4 parts with leading zeros (which some parsers read as octal).
    public init?(_ text: some StringProtocol) {
        var utf8 = Array(text.utf8)
        if let percent = utf8.firstIndex(of: UInt8(ascii: "%")) {
            guard percent > 0, percent < utf8.count - 1 else { return nil }
            utf8.removeSubrange(percent...)
        }
        if let v4 = Self.parseV4(utf8[...]) {
            self.init(v4: v4)
        } else if let (high, low) = Self.parseV6(utf8[...]) {
            self.init(v6: high, low)
        } else {
            return nil
        }
    }

    static func parseV4(_ text: ArraySlice<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        var part: UInt32 = 0
        var digits = 0
        for byte in text {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, parts < 3 else { return nil }
                value = value << 8 | part
                parts += 1
                part = 0
                digits = 0
            } else if byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                if digits > 0, part == 0 { return nil }  // a leading zero
                part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                digits += 1
                guard part <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, parts == 3 else { return nil }
        return value << 8 | part
    }

    static func parseV6(_ text: ArraySlice<UInt8>) -> (UInt64, UInt64)? {
        guard text.count >= 2, text.count <= 45 else { return nil }
        var groups: [UInt16] = []
        var gap: Int? = nil  // where `::` stands, as an index into groups
        var index = text.startIndex
        if text[index] == UInt8(ascii: ":") {
            guard text[index + 1] == UInt8(ascii: ":") else { return nil }
            gap = 0
            index += 2
        }
        while index < text.endIndex {
            // one group: hex digits, or (last) an IPv4 address
            var end = index
            while end < text.endIndex, text[end] != UInt8(ascii: ":") { end += 1 }
            let field = text[index..<end]
            if end == text.endIndex, field.contains(UInt8(ascii: ".")) {
                guard let v4 = parseV4(field) else { return nil }
                groups.append(UInt16(v4 >> 16))
                groups.append(UInt16(v4 & 0xffff))
                index = end
                break
            }
            guard !field.isEmpty, field.count <= 4 else { return nil }
            var group: UInt16 = 0
            for byte in field {
                guard let digit = hexValue(byte) else { return nil }
                group = group << 4 | UInt16(digit)
            }
            groups.append(group)
            index = end
            if index < text.endIndex {
                index += 1  // the colon
                if index < text.endIndex, text[index] == UInt8(ascii: ":") {
                    guard gap == nil else { return nil }
                    gap = groups.count
                    index += 1
                } else if index == text.endIndex {
                    return nil  // a trailing single colon
                }
            }
        }
        if let gap {
            guard groups.count <= 7 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: gap)
        }
        guard groups.count == 8 else { return nil }
        let high = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return (high, low)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    public var description: String {
        switch family {
        case .v4:
            let value = UInt32(truncatingIfNeeded: low)
            return "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
        case .v6:
            let groups = (0..<8).map { i -> UInt16 in
                let word = i < 4 ? high : low
                return UInt16(truncatingIfNeeded: word >> (48 - 16 * UInt64(i % 4)))
            }
            // the longest run of two or more zero groups becomes `::` (the first one when runs tie)
            var best: Range<Int>? = nil
            var start: Int? = nil
            for i in 0...8 {
                if i < 8, groups[i] == 0 {
                    if start == nil { start = i }
                } else if let s = start {
                    if i - s >= 2, i - s > (best?.count ?? 0) { best = s..<i }
                    start = nil
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            guard let best else { return hex.joined(separator: ":") }
            return hex[..<best.lowerBound].joined(separator: ":") + "::" + hex[best.upperBound...].joined(separator: ":")
        }
    }

    /// The address with all but its first `prefixLength` bits cleared.
    public func masked(to prefixLength: Int) -> IPAddress {
        switch family {
        case .v4:
            let bits = max(0, min(32, prefixLength))
            let mask: UInt32 = bits == 0 ? 0 : UInt32.max << (32 - bits)
            return IPAddress(v4: UInt32(truncatingIfNeeded: low) & mask)
        case .v6:
            let bits = max(0, min(128, prefixLength))
            let highMask: UInt64 = bits >= 64 ? .max : bits == 0 ? 0 : UInt64.max << (64 - bits)
            let lowMask: UInt64 = bits <= 64 ? 0 : bits == 128 ? .max : UInt64.max << (128 - bits)
            return IPAddress(rawV6: high & highMask, low & lowMask)
        }
    }

    /// An IPv6 address as it is, even when it is IPv4-mapped (for masks).
    private init(rawV6 high: UInt64, _ low: UInt64) {
        family = .v6
        self.high = high
        self.low = low
    }
}
