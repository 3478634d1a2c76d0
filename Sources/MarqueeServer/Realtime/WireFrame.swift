import NIOCore

/// A WebSocket text frame as it goes on the wire: the header (FIN, text opcode, length; a server's frames are not
/// masked) and the payload in one buffer, built once and written as is to every socket that receives it.
public struct WireFrame: Sendable, Hashable {
    /// Header and payload.
    public let bytes: ByteBuffer
    /// The payload's length in bytes (what `marquee_realtime_bytes_out_total` counts).
    public let payloadLength: Int

    public init(text: String) {
        let length = text.utf8.count
        let headerLength = length < 126 ? 2 : length <= Int(UInt16.max) ? 4 : 10
        var buffer = ByteBufferAllocator().buffer(capacity: headerLength + length)
        buffer.writeInteger(UInt8(0x81))  // FIN + text
        if length < 126 {
            buffer.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
        buffer.writeString(text)
        self.bytes = buffer
        self.payloadLength = length
    }

    /// The payload as text.
    public var text: String {
        let headerLength = bytes.readableBytes - payloadLength
        return bytes.getString(at: bytes.readerIndex + headerLength, length: payloadLength) ?? ""
    }
}
