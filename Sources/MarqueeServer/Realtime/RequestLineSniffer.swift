import NIOCore

/// The first bytes of the request being read on one connection (up to its first line break, at most 128 bytes), so
/// that a request the HTTP parser refuses can be answered with what was wrong with it: a well-formed request line
/// with a method the parser does not know is `501`, anything else `400`.
///
/// ``ConnectionGuard`` feeds it the bytes as they arrive; ``HTTPRequestGuard`` starts it again after each request,
/// asks it when a request fails, and notes when the first head has arrived. Both run on the connection's event loop.
final class RequestLineSniffer {
    static let limit = 128
    private(set) var bytes: [UInt8] = []
    /// Whether the line has ended (the bytes past the limit are looked at for its end, not kept).
    private(set) var lineComplete = false
    private var truncated = false
    /// The line's length so far, past the limit too.
    private var lineLength = 0
    /// What NIO's decoder accepts of a request's head, request line included.
    static let headLimit = 80 * 1024

    var isCapturing: Bool { !lineComplete }

    /// Whether the connection's first request head has arrived (its head timeout is over).
    var sawHead = false

    /// Whether anything but empty lines has arrived for this request.
    var sawBytes: Bool { !bytes.isEmpty }

    func capture(_ buffer: ByteBuffer) {
        guard !lineComplete else { return }
        buffer.withUnsafeReadableBytes { raw in
            for byte in raw {
                if bytes.isEmpty, byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") { continue }  // empty lines may precede a request
                if byte == UInt8(ascii: "\n") {
                    if !truncated, bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
                    lineComplete = true
                    return
                }
                lineLength += 1
                if bytes.count < Self.limit {
                    bytes.append(byte)
                } else {
                    truncated = true
                }
            }
        }
    }

    /// The next request starts.
    func reset() {
        bytes.removeAll(keepingCapacity: true)
        lineComplete = false
        truncated = false
        lineLength = 0
    }

    /// Whether the request line alone is too long for the decoder (rather than the header fields after it).
    var requestLineOverflowed: Bool { !lineComplete || lineLength >= Self.headLimit - 16 }

    /// Whether the request starts as a request line does (`TOKEN SP TARGET SP HTTP/d.d` when the line is complete,
    /// `TOKEN SP TARGET…` when it is not), so that a refused method is one the server does not implement.
    var hasRequestLineShape: Bool {
        guard let space = bytes.firstIndex(of: UInt8(ascii: " ")), space > 0, bytes[..<space].allSatisfy(Self.isTokenByte) else { return false }
        let rest = bytes[(space + 1)...]
        guard !rest.isEmpty, rest.allSatisfy({ $0 > 0x20 && $0 < 0x7f || $0 == UInt8(ascii: " ") }) else { return false }
        guard lineComplete, !truncated else { return rest.first != UInt8(ascii: " ") }
        let parts = rest.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty else { return false }
        let version = Array(parts[1])
        return version.count == 8 && version.starts(with: Array("HTTP/".utf8)) && Self.isDigit(version[5]) && version[6] == UInt8(ascii: ".")
            && Self.isDigit(version[7])
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
