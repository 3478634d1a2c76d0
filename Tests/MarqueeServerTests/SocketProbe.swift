import Foundation
import HummingbirdWSClient
import Logging
import MarqueeCore
import NIOCore
import Synchronization
import Testing

@testable import MarqueeServer

/// One end of a realtime socket in a test: sends frames and waits (with a deadline) for the server's frames in order.
final class SocketProbe: Sendable {
    enum Frame: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
    }

    let serializer: PhoenixSerializer
    let outbound: WebSocketOutboundWriter
    let frames = AsyncQueue<Frame>()

    init(serializer: PhoenixSerializer, outbound: WebSocketOutboundWriter) {
        self.serializer = serializer
        self.outbound = outbound
    }

    /// Sends a frame as a client writes it: in 1.0.0 that includes `join_ref` (which server frames never carry).
    func send(_ message: PhoenixMessage) async throws {
        switch serializer {
        case .v1:
            let object: JSONObject = [
                "topic": .string(message.topic), "event": .string(message.event), "payload": message.payload,
                "ref": message.ref.map { .string($0) } ?? .null, "join_ref": message.joinRef.map { .string($0) } ?? .null,
            ]
            try await outbound.write(.text(JSONValue.object(object).serialized()))
        case .v2:
            try await outbound.write(.text(serializer.encode(message)))
        }
    }

    func sendText(_ text: String) async throws {
        try await outbound.write(.text(text))
    }

    func sendBinary(_ bytes: [UInt8]) async throws {
        try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
    }

    /// The next text frame as the server wrote it.
    func receiveText(_ what: String, within limit: Duration = .seconds(10)) async throws -> String {
        let frame = try await withDeadline(limit, "waiting for \(what)") { try await self.frames.next() }
        switch frame {
        case .text(let text): return text
        case .binary(let bytes): throw TestFailure("expected \(what) as text, got a binary frame of \(bytes.count) bytes")
        case nil: throw TestFailure("the socket closed while waiting for \(what)")
        }
    }

    /// The next frame, decoded.
    func receive(_ what: String, within limit: Duration = .seconds(10)) async throws -> PhoenixMessage {
        let text = try await receiveText(what, within: limit)
        do {
            return try serializer.decode(text)
        } catch {
            throw TestFailure("\(what): the server sent a frame that does not decode (\(error)): \(text)")
        }
    }

    /// Joins `topic` and returns the reply (the caller checks what follows).
    func join(
        _ topic: String, ref: String, bindings: [JSONObject] = [], config extra: JSONObject = [:], token: String? = nil
    ) async throws -> PhoenixMessage {
        try serializer.decode(try await joinText(topic, ref: ref, bindings: bindings, config: extra, token: token))
    }

    /// Joins `topic` and returns the reply as the server wrote it.
    func joinText(
        _ topic: String, ref: String, bindings: [JSONObject] = [], config extra: JSONObject = [:], token: String? = nil
    ) async throws -> String {
        var config: JSONObject = [
            "broadcast": .object(["ack": false, "self": false]), "presence": .object(["key": "", "enabled": false]),
            "postgres_changes": .array(bindings.map { .object($0) }), "private": false,
        ]
        for (key, value) in extra { config[key] = value }
        var payload: JSONObject = ["config": .object(config)]
        if let token { payload["access_token"] = .string(token) }
        try await send(PhoenixMessage(joinRef: ref, ref: ref, topic: topic, event: "phx_join", payload: .object(payload)))
        let text = try await receiveText("the reply to joining \(topic)")
        let reply = try serializer.decode(text)
        guard reply.event == "phx_reply", reply.ref == ref, reply.topic == topic else {
            throw TestFailure("expected the reply to joining \(topic) (ref \(ref)), got \(text)")
        }
        return text
    }

    /// Joins with bindings and expects the ok reply followed by `Subscribed to PostgreSQL`; returns the binding ids.
    func subscribe(_ topic: String, ref: String, bindings: [JSONObject], token: String? = nil) async throws -> [Int64] {
        let reply = try await join(topic, ref: ref, bindings: bindings, token: token)
        guard reply.payload["status"] == "ok", let echoed = reply.payload["response"]?["postgres_changes"]?.arrayValue else {
            throw TestFailure("joining \(topic) failed: \(reply.payload.serialized())")
        }
        let system = try await receive("the system message after joining \(topic)")
        guard system.event == "system", system.payload["status"] == "ok", system.payload["message"] == "Subscribed to PostgreSQL" else {
            throw TestFailure("expected Subscribed to PostgreSQL on \(topic), got \(serializer.encode(system))")
        }
        return echoed.compactMap { $0["id"]?.intValue }
    }
}

/// The same value with every object's keys sorted, to compare content regardless of key order.
func sortingKeys(_ value: JSONValue?) -> JSONValue? {
    switch value {
    case .object(let object)?:
        return .object(JSONObject(object.entries.sorted { $0.key < $1.key }.map { (key: $0.key, value: sortingKeys($0.value) ?? .null) }))
    case .array(let items)?: return .array(items.map { sortingKeys($0) ?? .null })
    default: return value
    }
}

/// Whether two JSON texts hold the same value, whatever the order of object keys.
func sameJSON(_ a: String, _ b: String) -> Bool {
    guard let left = try? JSONValue.parse(a), let right = try? JSONValue.parse(b) else { return false }
    return sortingKeys(left) == sortingKeys(right)
}

/// Opens a realtime socket to the app, runs `body` with it, then closes the socket.
func withSocket(
    _ app: LiveApp, apikey: String?, vsn: String = "1.0.0", _ body: @escaping @Sendable (SocketProbe) async throws -> Void
) async throws {
    var query = "vsn=\(vsn)"
    if let apikey { query = "apikey=\(apikey)&" + query }
    let url = "ws://127.0.0.1:\(app.port)/realtime/v1/websocket?\(query)"
    let serializer = PhoenixSerializer(vsn: vsn) ?? .v1
    let failure = Mutex<(any Error)?>(nil)
    let ran = Mutex(false)
    try await withDeadline(.seconds(90), "running a socket test") {
        try await WebSocketClient.connect(url: url, logger: Logger(label: "marquee-test-socket")) { inbound, outbound, _ in
            ran.withLock { $0 = true }
            let probe = SocketProbe(serializer: serializer, outbound: outbound)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { probe.frames.finish() }
                    for try await message in inbound.messages(maxSize: 1 << 22) {
                        switch message {
                        case .text(let text): probe.frames.push(.text(text))
                        case .binary(let buffer): probe.frames.push(.binary(Array(buffer.readableBytesView)))
                        }
                    }
                }
                do {
                    try await body(probe)
                } catch {
                    failure.withLock { $0 = error }
                }
                try? await outbound.close(.normalClosure, reason: "test done")
                try? await group.waitForAll()
            }
        }
    }
    if let error = failure.withLock({ $0 }) { throw error }
    guard ran.withLock({ $0 }) else { throw TestFailure("the socket to \(url) never opened") }
}
