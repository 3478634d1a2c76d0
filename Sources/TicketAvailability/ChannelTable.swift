import Foundation
import MarqueeCore

/// The channels of one client, one per event, reference-counted by subscription handles. A pure state machine:
/// inputs are handle changes, connection changes and decoded messages; outputs are ``Action``s the client performs.
struct ChannelTable: Sendable {
    enum JoinState: Sendable, Equatable { case closed, joining, joined }

    struct Channel: Sendable {
        var event: UUID
        var handles: Set<Int> = []
        var joinRef: String?
        var state: JoinState = .closed
        /// Joins refused (or channels dropped by the server) in a row; sets the delay before the next try.
        var failedJoins = 0
        var book: AvailabilityBook
        var topic: String { ChannelTable.topic(for: event) }
    }

    enum Action: Sendable, Equatable {
        case send(PhoenixMessage)
        /// The event's picture changed.
        case changed(UUID)
        /// The join was accepted: load the snapshot over HTTP if the join does not carry it; the socket is healthy.
        case joined(UUID)
        case report(TicketAvailabilityError)
        /// The join was refused or the server dropped the channel: try again after the backoff delay of `attempt`.
        case rejoinLater(UUID, attempt: Int)
    }

    enum AddResult: Equatable {
        case added([Action])
        case limitReached
    }

    private(set) var channels: [UUID: Channel] = [:]
    private var topics: [String: UUID] = [:]
    private var refCounter = 0
    let maxChannels: Int
    let joinSnapshot: Bool

    init(maxChannels: Int, joinSnapshot: Bool) {
        self.maxChannels = maxChannels
        self.joinSnapshot = joinSnapshot
    }

    static func topic(for event: UUID) -> String { "realtime:event-\(event.lowercased)-tickets" }

    mutating func nextRef() -> String {
        refCounter += 1
        return String(refCounter)
    }

    func book(_ event: UUID) -> AvailabilityBook? { channels[event]?.book }

    /// A handle subscribes to `event`; joins the channel if it is new and the socket is open.
    mutating func add(handle: Int, event: UUID, connected: Bool, token: String) -> AddResult {
        if channels[event] != nil {
            channels[event]!.handles.insert(handle)
            return .added([])
        }
        guard channels.count < maxChannels else { return .limitReached }
        channels[event] = Channel(event: event, handles: [handle], book: AvailabilityBook(eventID: event))
        topics[Self.topic(for: event)] = event
        return .added(connected ? [join(event, token: token)] : [])
    }

    /// A handle goes away; the last one leaves the channel. Returns whether the channel was removed.
    mutating func remove(handle: Int, event: UUID, connected: Bool) -> (removed: Bool, actions: [Action]) {
        guard var channel = channels[event], channel.handles.remove(handle) != nil else { return (false, []) }
        guard channel.handles.isEmpty else {
            channels[event] = channel
            return (false, [])
        }
        channels[event] = nil
        topics[channel.topic] = nil
        guard connected, channel.state != .closed, let joinRef = channel.joinRef else { return (true, []) }
        return (true, [.send(PhoenixMessage(joinRef: joinRef, ref: nextRef(), topic: channel.topic, event: "phx_leave"))])
    }

    /// The socket opened: join every channel (with its bindings and the current token).
    mutating func connectionOpened(token: String) -> [Action] {
        channels.keys.sorted { $0.uuidString < $1.uuidString }.map { join($0, token: token) }
    }

    /// The socket closed: every channel needs a rejoin.
    mutating func connectionClosed() {
        for event in channels.keys {
            channels[event]!.state = .closed
            channels[event]!.joinRef = nil
        }
    }

    /// The delay of a refused join passed: join again if the channel is still wanted and not joined.
    mutating func rejoin(_ event: UUID, connected: Bool, token: String) -> [Action] {
        guard connected, let channel = channels[event], channel.state == .closed else { return [] }
        return [join(event, token: token)]
    }

    /// `access_token` for every joined channel.
    mutating func refreshToken(_ token: String) -> [Action] {
        channels.values.filter { $0.state == .joined }.sorted { $0.topic < $1.topic }.map { channel in
            .send(
                PhoenixMessage(
                    joinRef: channel.joinRef, ref: nextRef(), topic: channel.topic, event: "access_token",
                    payload: .object(["access_token": .string(token)])))
        }
    }

    /// Applies a snapshot (from HTTP); returns whether the picture changed.
    mutating func apply(_ snapshot: AvailabilitySnapshot) -> Bool {
        guard channels[snapshot.eventID] != nil else { return false }
        return channels[snapshot.eventID]!.book.apply(snapshot)
    }

    private mutating func join(_ event: UUID, token: String) -> Action {
        let ref = nextRef()
        channels[event]!.joinRef = ref
        channels[event]!.state = .joining
        var config: JSONObject = [
            "broadcast": .object(["self": false, "ack": false]),
            "presence": .object(["key": "", "enabled": false]),
            "postgres_changes": .array([
                .object(["event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": .string("event_id=eq.\(event.lowercased)")])
            ]),
            "private": false,
        ]
        if joinSnapshot { config["marquee"] = .object(["snapshot": true]) }
        return .send(
            PhoenixMessage(
                joinRef: ref, ref: ref, topic: Self.topic(for: event), event: "phx_join",
                payload: .object(["config": .object(config), "access_token": .string(token)])))
    }

    private mutating func joinFailed(_ event: UUID) -> Action {
        channels[event]!.state = .closed
        channels[event]!.joinRef = nil
        channels[event]!.failedJoins += 1
        return .rejoinLater(event, attempt: channels[event]!.failedJoins)
    }

    /// A message from the server on a channel topic.
    mutating func receive(_ message: PhoenixMessage, token: String) -> [Action] {
        guard let event = topics[message.topic], let channel = channels[event] else { return [] }
        // frames of an earlier join of this topic are stale
        if let joinRef = message.joinRef, joinRef != channel.joinRef { return [] }
        switch message.event {
        case "phx_reply":
            guard message.ref != nil, message.ref == channel.joinRef, channel.state == .joining else { return [] }
            if message.payload["status"]?.stringValue == "ok" {
                channels[event]!.state = .joined
                channels[event]!.failedJoins = 0
                return [.joined(event)]
            }
            let reason = message.payload["response"]?["reason"]?.stringValue ?? "join refused"
            return [.report(.joinRefused(event: event, reason: reason)), joinFailed(event)]
        case "postgres_changes":
            guard let data = message.payload["data"]?.objectValue, let record = data["record"]?.objectValue else {
                return [.report(.invalidPayload(topic: message.topic, event: message.event, reason: "no data.record"))]
            }
            guard AvailabilityBook.ticketType(from: record) != nil else {
                return [.report(.invalidPayload(topic: message.topic, event: message.event, reason: "record is not a ticket type row"))]
            }
            return channels[event]!.book.apply(record: record) ? [.changed(event)] : []
        case "system":
            guard message.payload["status"]?.stringValue == "error" else { return [] }
            let reason = message.payload["message"]?.stringValue ?? "system error"
            return [.report(.channelError(event: event, reason: reason))]
        case "phx_error", "phx_close":
            guard channel.state != .closed else { return [] }
            // the server dropped the channel while we still want it: join again (after a delay, as for a refusal)
            return [.report(.channelError(event: event, reason: message.event)), joinFailed(event)]
        default:
            return []
        }
    }
}
