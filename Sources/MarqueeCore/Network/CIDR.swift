/// A block of addresses in CIDR notation: `10.0.0.0/8`, `2001:db8::/32`, or one address (`127.0.0.1` is
/// `127.0.0.1/32`). IPv4 blocks also hold the IPv4-mapped IPv6 form of their addresses (``IPAddress`` maps them).
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    /// The first address of the block.
    public let network: IPAddress
    public let prefixLength: Int

    public struct ParseError: Error, CustomStringConvertible, Sendable, Equatable {
        public let text: String
        public let reason: String
        public var description: String { "'\(text)' is not a CIDR block: \(reason)" }
    }

    public init(network: IPAddress, prefixLength: Int) {
        self.prefixLength = max(0, min(network.bitWidth, prefixLength))
        self.network = network.masked(to: self.prefixLength)
    }

    /// Parses `ADDRESS/PREFIX` or a bare address. Bits set past the prefix are refused (`10.0.0.1/8` is most likely
    /// a typo for `10.0.0.0/8` or `10.0.0.1/32`), as are prefixes longer than the address.
    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.trimmingWhitespace()
        let parts = trimmed.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]), !parts[0].contains("%") else {
            throw ParseError(text: trimmed, reason: "expected an IPv4 or IPv6 address before the '/'")
        }
        var length = address.bitWidth
        if parts.count == 2 {
            guard let n = Int(parts[1]), n >= 0, parts[1].allSatisfy(\.isASCIIDigit) else {
                throw ParseError(text: trimmed, reason: "the prefix length after '/' must be a whole number")
            }
            length = n
            // an IPv4-mapped block written in IPv6 (`::ffff:10.0.0.0/104`) is the IPv4 block
            if address.family == .v4, parts[0].contains(":") {
                guard length >= 96, length <= 128 else {
                    throw ParseError(text: trimmed, reason: "an IPv4-mapped block needs a prefix length from 96 to 128")
                }
                length -= 96
            }
            guard length <= address.bitWidth else {
                throw ParseError(text: trimmed, reason: "the prefix length is at most \(address.bitWidth) for this address")
            }
        }
        guard address.masked(to: length) == address else {
            throw ParseError(
                text: trimmed,
                reason:
                    "it has bits set past its /\(length) prefix; write \(address.masked(to: length))/\(length) for the block or \(address) alone for one address"
            )
        }
        self.init(network: address, prefixLength: length)
    }

    public func contains(_ address: IPAddress) -> Bool {
        address.family == network.family && address.masked(to: prefixLength) == network
    }

    public var description: String { "\(network)/\(prefixLength)" }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
