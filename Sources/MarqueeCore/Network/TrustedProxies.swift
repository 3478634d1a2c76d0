/// The proxies whose word on the client's address is believed (`MARQUEE_TRUSTED_PROXIES`), and how that address is
/// read from a request they forwarded.
///
/// A request whose TCP peer is one of them carries the client's address in `X-Forwarded-For` (each proxy appends the
/// address it received the request from) or, when that header is absent, in the `for=` parameters of `Forwarded`
/// (RFC 7239). The list is read from the right: the first address that is not itself a trusted proxy is the client;
/// everything to its left was written by the client and proves nothing. From any other peer these headers are
/// ignored, so a client cannot choose the address its limits are counted under.
public struct TrustedProxies: Sendable, Equatable, CustomStringConvertible {
    public let blocks: [CIDR]

    public init(_ blocks: [CIDR] = []) { self.blocks = blocks }

    /// No proxy is trusted: every client is its TCP peer.
    public static let none = TrustedProxies()

    /// Parses a comma-separated list of CIDR blocks (`127.0.0.1/32,10.0.0.0/8,::1/128`); spaces and empty items are
    /// ignored, so an empty text trusts no one.
    public init(parsing list: String) throws(CIDR.ParseError) {
        var blocks: [CIDR] = []
        for item in list.split(separator: ",") where !item.allSatisfy(\.isWhitespace) {
            blocks.append(try CIDR(parsing: String(item)))
        }
        self.init(blocks)
    }

    public var isEmpty: Bool { blocks.isEmpty }

    public func contains(_ address: IPAddress) -> Bool {
        blocks.contains { $0.contains(address) }
    }

    public var description: String { blocks.map(\.description).joined(separator: ",") }

    /// The client's address for a request from `peer` with these `X-Forwarded-For` and `Forwarded` field values (each
    /// header line one element, in order): `peer` itself unless it is a trusted proxy. When every forwarded address
    /// is a trusted proxy the leftmost one is the client; when the rightmost untrusted entry cannot be read (`unknown`,
    /// an obfuscated name, garbage) the nearest proxy that forwarded it stands for the client.
    public func clientAddress(peer: IPAddress, forwardedFor: [String], forwarded: [String]) -> IPAddress {
        guard !blocks.isEmpty, contains(peer) else { return peer }
        let hops: [IPAddress?]
        if !forwardedFor.isEmpty {
            hops = forwardedFor.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }.map { Self.node(Substring($0)) }
        } else if !forwarded.isEmpty {
            hops = forwarded.flatMap(Self.forwardedFor)
        } else {
            return peer
        }
        var nearest = peer
        for hop in hops.reversed() {
            guard let hop else { return nearest }
            guard contains(hop) else { return hop }
            nearest = hop
        }
        return nearest
    }

    /// One `X-Forwarded-For` entry or `Forwarded` node: an address, optionally with a port (`192.0.2.1:4711`,
    /// `[2001:db8::1]:4711`, `[2001:db8::1]`).
    static func node(_ text: Substring) -> IPAddress? {
        var text = text
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        if text.first == "[" {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let rest = text[text.index(after: close)...]
            guard rest.isEmpty || (rest.first == ":" && rest.dropFirst().allSatisfy(\.isNumber) && rest.count > 1) else { return nil }
            let inner = text[text.index(after: text.startIndex)..<close]
            guard inner.contains(":") else { return nil }
            return IPAddress(inner)
        }
        if let address = IPAddress(text) { return address }
        // an IPv4 address with a port
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty, parts[1].allSatisfy(\.isNumber), parts[0].contains(".") else { return nil }
        return IPAddress(parts[0])
    }

    /// The `for=` value of each element of one `Forwarded` field value, in order (nil for an element whose `for` is
    /// missing or not an address). Quoted strings may hold commas and semicolons.
    static func forwardedFor(_ value: String) -> [IPAddress?] {
        var result: [IPAddress?] = []
        var current: IPAddress?? = nil  // the element's `for`, once seen
        var pair = ""
        var inQuotes = false
        var escaped = false
        func endPair() {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2, parts[0].trimming(" \t").lowercased() == "for", current == nil {
                var node = parts[1].trimming(" \t")
                if node.hasPrefix("\""), node.hasSuffix("\""), node.count >= 2 { node = String(node.dropFirst().dropLast()) }
                current = .some(Self.node(Substring(node)))
            }
            pair = ""
        }
        func endElement() {
            endPair()
            result.append(current ?? nil)
            current = nil
        }
        for character in value {
            if escaped {
                pair.append(character)
                escaped = false
            } else if inQuotes {
                if character == "\\" {
                    escaped = true
                } else {
                    pair.append(character)
                    if character == "\"" { inQuotes = false }
                }
            } else if character == "\"" {
                pair.append(character)
                inQuotes = true
            } else if character == ";" {
                endPair()
            } else if character == "," {
                endElement()
            } else {
                pair.append(character)
            }
        }
        endElement()
        return result
    }
}

extension StringProtocol {
    fileprivate func trimming(_ set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
