import Foundation
import Synchronization
import Logging
import MarqueeCore

/// Connection states the watcher reports.
public enum ConnectionStatus: Sendable, Equatable {
    case connecting
    case connected
    case reconnecting(attempt: Int)
    case disconnected(reason: String)
}

/// Follows one event's availability over the realtime protocol: joins `event-<id>-tickets` with the snapshot
/// extension, applies changes by version, heartbeats, and reconnects with capped exponential backoff.
public struct EventWatcher: Sendable {
    public enum Update: Sendable {
        case status(ConnectionStatus)
        case availability(AvailabilitySnapshot)
    }

    let baseURL: String
    let apiKey: String
    let eventID: UUID
    let transport: any RealtimeTransport
    let heartbeatInterval: Duration
    let logger: Logger

    public init(
        baseURL: String, apiKey: String, eventID: UUID, transport: any RealtimeTransport = WebSocketTransport(),
        heartbeatInterval: Duration = .seconds(25), logger: Logger = Logger(label: "TicketAvailability")
    ) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.eventID = eventID
        self.transport = transport
        self.heartbeatInterval = heartbeatInterval
        self.logger = logger
    }

    var socketURL: String {
        let ws = baseURL.replacingOccurrences(of: "http://", with: "ws://").replacingOccurrences(of: "https://", with: "wss://")
        let key = apiKey.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? apiKey
        return "\(ws)/realtime/v1/websocket?apikey=\(key)&vsn=1.0.0"
    }

    var topic: String { "realtime:event-\(eventID.lowercased)-tickets" }

    /// The join frame: UPDATEs of this event's ticket types, with the current rows first.
    func joinFrame(ref: String) -> String {
        let config: JSONObject = [
            "broadcast": .object(["self": false, "ack": false]),
            "presence": .object(["key": "", "enabled": false]),
            "postgres_changes": .array([
                .object([
                    "event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": .string("event_id=eq.\(eventID.lowercased)"),
                ])
            ]),
            "private": false,
            "marquee": .object(["snapshot": true]),
        ]
        return PhoenixSerializer.v1.encode(
            PhoenixMessage(joinRef: ref, ref: ref, topic: topic, event: "phx_join", payload: .object(["config": .object(config)])))
    }

    /// Updates until the task is cancelled.
    public func updates() -> AsyncStream<Update> {
        AsyncStream { continuation in
            let task = Task {
                var book = AvailabilityBook(eventID: eventID)
                var attempt = 0
                continuation.yield(.status(.connecting))
                while !Task.isCancelled {
                    let booked = BookBox(book)
                    do {
                        try await transport.run(url: socketURL) { link in
                            try await self.session(link, book: booked, continuation: continuation)
                        }
                    } catch {
                        logger.debug("realtime connection ended", metadata: ["error": "\(error)"])
                    }
                    book = booked.value
                    if Task.isCancelled { break }
                    attempt += 1
                    continuation.yield(.status(.reconnecting(attempt: attempt)))
                    let delay = min(Double(1 << min(attempt, 5)) * 0.25, 10) * Double.random(in: 0.8...1.2)
                    try? await Task.sleep(for: .seconds(delay))
                }
                continuation.yield(.status(.disconnected(reason: "stopped")))
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    private func session(_ link: RealtimeLink, book: BookBox, continuation: AsyncStream<Update>.Continuation) async throws {
        try await link.send(joinFrame(ref: "1"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var ref = 1
                while true {
                    try await Task.sleep(for: heartbeatInterval)
                    ref += 1
                    try await link.send(PhoenixSerializer.v1.encode(PhoenixMessage(ref: String(ref), topic: "phoenix", event: "heartbeat")))
                }
            }
            defer { group.cancelAll() }
            for try await text in link.frames {
                guard let message = try? PhoenixSerializer.v1.decode(text), message.topic == topic || message.topic == "phoenix" else { continue }
                switch message.event {
                case "phx_reply" where message.ref == "1":
                    if message.payload["status"]?.stringValue == "ok" {
                        continuation.yield(.status(.connected))
                    } else {
                        let reason = message.payload["response"]?["reason"]?.stringValue ?? "join refused"
                        continuation.yield(.status(.disconnected(reason: reason)))
                        return
                    }
                case "postgres_changes":
                    if let record = message.payload["data"]?["record"]?.objectValue, book.apply(record) {
                        continuation.yield(.availability(book.value.snapshot))
                    }
                case "phx_close":
                    return
                default:
                    continue
                }
            }
        }
    }
}

/// The book shared between one connection's session and the reconnect loop; only one session runs at a time.
final class BookBox: Sendable {
    private let storage: Mutex<AvailabilityBook>
    init(_ book: AvailabilityBook) { storage = Mutex(book) }
    var value: AvailabilityBook { storage.withLock { $0 } }
    func apply(_ record: JSONObject) -> Bool { storage.withLock { $0.apply(record: record) } }
}
