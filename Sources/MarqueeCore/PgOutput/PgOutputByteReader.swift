/// A bounds-checked big-endian cursor over one `pgoutput` message. Every read either succeeds or throws
/// `PgOutputError.truncatedMessage`; no read can trap on short or hostile input.
struct PgOutputByteReader {
    private let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset >= bytes.count }

    mutating func readUInt8(_ what: String) throws(PgOutputError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(what, offset: offset) }
        let value = bytes[offset]
        offset += 1
        return value
    }

    mutating func readUInt16(_ what: String) throws(PgOutputError) -> UInt16 {
        UInt16(truncatingIfNeeded: try readBigEndian(width: 2, what))
    }

    mutating func readInt16(_ what: String) throws(PgOutputError) -> Int16 {
        Int16(bitPattern: try readUInt16(what))
    }

    mutating func readUInt32(_ what: String) throws(PgOutputError) -> UInt32 {
        UInt32(truncatingIfNeeded: try readBigEndian(width: 4, what))
    }

    mutating func readInt32(_ what: String) throws(PgOutputError) -> Int32 {
        Int32(bitPattern: try readUInt32(what))
    }

    mutating func readUInt64(_ what: String) throws(PgOutputError) -> UInt64 {
        try readBigEndian(width: 8, what)
    }

    mutating func readInt64(_ what: String) throws(PgOutputError) -> Int64 {
        Int64(bitPattern: try readUInt64(what))
    }

    /// Reads `count` raw bytes.
    mutating func readBytes(_ count: Int, _ what: String) throws(PgOutputError) -> [UInt8] {
        guard count >= 0 else { throw .malformed("negative length \(count) for \(what)", offset: offset) }
        guard count <= remaining else { throw .truncated(what, offset: offset) }
        let slice = Array(bytes[offset..<(offset + count)])
        offset += count
        return slice
    }

    /// Reads a NUL-terminated string (Postgres `String` in the replication protocol). Invalid UTF-8 is repaired with
    /// U+FFFD rather than rejected, so a non-UTF-8 database degrades instead of stalling the feed.
    mutating func readCString(_ what: String) throws(PgOutputError) -> String {
        var end = offset
        while end < bytes.count, bytes[end] != 0 { end += 1 }
        guard end < bytes.count else { throw .truncated("\(what) (no string terminator)", offset: offset) }
        let text = String(decoding: bytes[offset..<end], as: UTF8.self)
        offset = end + 1
        return text
    }

    private mutating func readBigEndian(width: Int, _ what: String) throws(PgOutputError) -> UInt64 {
        guard width <= remaining else { throw .truncated(what, offset: offset) }
        var value: UInt64 = 0
        for index in offset..<(offset + width) {
            value = (value << 8) | UInt64(bytes[index])
        }
        offset += width
        return value
    }
}
