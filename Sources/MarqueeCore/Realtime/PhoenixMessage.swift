import Foundation

/// One Phoenix channel message: `join_ref`, `ref`, `topic`, `event`, `payload`.
public struct PhoenixMessage: Sendable, Hashable {
    public var joinRef: String?
    public var ref: String?
    public var topic: String
    public var event: String
    public var payload: JSONValue

    public init(joinRef: String? = nil, ref: String? = nil, topic: String, event: String, payload: JSONValue = .object([:])) {
        self.joinRef = joinRef
        self.ref = ref
        self.topic = topic
        self.event = event
        self.payload = payload
    }
}

/// Why a frame could not be read; the text goes back to the client.
public struct FrameError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The two wire formats: `1.0.0` JSON objects, `2.0.0` JSON arrays `[join_ref, ref, topic, event, payload]`.
public enum PhoenixSerializer: String, Sendable, Hashable, CaseIterable {
    case v1 = "1.0.0"
    case v2 = "2.0.0"

    /// The serializer for a `vsn` query parameter; absent means 1.0.0.
    public init?(vsn: String?) {
        guard let vsn, !vsn.isEmpty else {
            self = .v1
            return
        }
        if vsn.hasPrefix("1.") {
            self = .v1
        } else if vsn.hasPrefix("2.") {
            self = .v2
        } else {
            return nil
        }
    }

    public func encode(_ message: PhoenixMessage) -> String {
        var out = ""
        out.reserveCapacity(128)
        switch self {
        case .v1:
            // never join_ref, always ref (null when absent): realtime-py drops frames without a ref key
            out += "{\"topic\":"
            JSONValue.writeString(message.topic, to: &out)
            out += ",\"event\":"
            JSONValue.writeString(message.event, to: &out)
            out += ",\"payload\":"
            message.payload.write(to: &out)
            out += ",\"ref\":"
            Self.writeOptional(message.ref, to: &out)
            out += "}"
        case .v2:
            out += "["
            Self.writeOptional(message.joinRef, to: &out)
            out += ","
            Self.writeOptional(message.ref, to: &out)
            out += ","
            JSONValue.writeString(message.topic, to: &out)
            out += ","
            JSONValue.writeString(message.event, to: &out)
            out += ","
            message.payload.write(to: &out)
            out += "]"
        }
        return out
    }

    private static func writeOptional(_ value: String?, to out: inout String) {
        if let value { JSONValue.writeString(value, to: &out) } else { out += "null" }
    }

    /// Reads a text frame in this format (either shape is accepted, since the shape says which it is).
    public func decode(_ text: String) throws(FrameError) -> PhoenixMessage {
        let value: JSONValue
        do {
            value = try JSONValue.parse(text)
        } catch {
            throw FrameError("the frame is not valid JSON")
        }
        switch value {
        case .array(let items):
            guard items.count == 5 else {
                throw FrameError("a 2.0.0 frame is an array of 5 items: [join_ref, ref, topic, event, payload]")
            }
            return try Self.message(joinRef: items[0], ref: items[1], topic: items[2], event: items[3], payload: items[4])
        case .object(let object):
            return try Self.message(
                joinRef: object["join_ref"] ?? .null, ref: object["ref"] ?? .null, topic: object["topic"] ?? .null,
                event: object["event"] ?? .null, payload: object["payload"] ?? .object([:]))
        default:
            throw FrameError("a frame must be a JSON object (vsn 1.0.0) or array (vsn 2.0.0)")
        }
    }

    private static func message(joinRef: JSONValue, ref: JSONValue, topic: JSONValue, event: JSONValue, payload: JSONValue) throws(FrameError)
        -> PhoenixMessage
    {
        guard case .string(let topic) = topic, !topic.isEmpty else { throw FrameError("the frame has no topic") }
        guard case .string(let event) = event, !event.isEmpty else { throw FrameError("the frame has no event") }
        let payload: JSONValue = payload.isNull ? .object([:]) : payload
        return PhoenixMessage(joinRef: refText(joinRef), ref: refText(ref), topic: topic, event: event, payload: payload)
    }

    /// Refs are strings; a number is accepted and kept as its text.
    private static func refText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let s): return s
        case .int(let i): return String(i)
        default: return nil
        }
    }

    /// Reads a binary 2.0.0 user-broadcast push (kind 3), as realtime-js sends broadcasts:
    /// `3, join_ref_len, ref_len, topic_len, event_len, meta_len, encoding, join_ref, ref, topic, event, meta, payload`.
    /// It becomes an ordinary `broadcast` message `{type:"broadcast", event, payload}`; a non-JSON payload is refused.
    public static func decodeBinaryBroadcast(_ bytes: [UInt8]) throws(FrameError) -> PhoenixMessage {
        guard bytes.count >= 7, bytes[0] == 3 else {
            throw FrameError("binary frames are only accepted as user broadcast pushes (kind 3)")
        }
        let lengths = (1...5).map { Int(bytes[$0]) }
        let encoding = bytes[6]
        var offset = 7
        var fields: [String] = []
        for length in lengths {
            guard offset + length <= bytes.count else { throw FrameError("the binary frame is shorter than its header says") }
            guard let text = String(validating: bytes[offset..<offset + length], as: UTF8.self) else {
                throw FrameError("the binary frame has a field that is not UTF-8")
            }
            fields.append(text)
            offset += length
        }
        guard encoding == 1 else { throw FrameError("binary broadcast payloads must be JSON (encoding 1)") }
        let payloadText = String(decoding: bytes[offset...], as: UTF8.self)
        let payload: JSONValue
        do {
            payload = try JSONValue.parse(payloadText)
        } catch {
            throw FrameError("the binary broadcast payload is not valid JSON")
        }
        var broadcast: JSONObject = ["type": "broadcast", "event": .string(fields[3]), "payload": payload]
        if !fields[4].isEmpty, let meta = try? JSONValue.parse(fields[4]) { broadcast["meta"] = meta }
        return PhoenixMessage(
            joinRef: fields[0].isEmpty ? nil : fields[0], ref: fields[1].isEmpty ? nil : fields[1], topic: fields[2], event: "broadcast",
            payload: .object(broadcast))
    }
}
