import Foundation
import MarqueeCore
import Synchronization

extension RealtimeHub {
    // MARK: Broadcast and presence

    /// Sends a client's broadcast to the topic's other members of the sender's privacy (and to the sender when it asked
    /// for its own): a public channel never reaches a private one of the same name, nor the other way round. False when
    /// the topic's broadcast rate is exceeded (nothing is sent).
    @discardableResult
    func broadcast(topic: String, payload: JSONValue, from sender: Int, now: Double = ProcessInfo.processInfo.systemUptime) -> Bool {
        let targets: [ConnectionHandle]? = state.withLock { state in
            if let rate = broadcastsPerSecond {
                var bucket = state.topicBuckets[topic] ?? TokenBucket(rate: rate, burst: rate * 2)
                let allowed = bucket.take(now: now)
                state.topicBuckets[topic] = bucket
                if state.topicBuckets.count > 100_000 { state.topicBuckets = [topic: bucket] }  // bounded memory
                guard allowed else { return nil }
            }
            guard let members = state.members[topic], let senderIsPrivate = members[sender]?.isPrivate else { return [] }
            return members.compactMap { id, member in
                member.isPrivate != senderIsPrivate || (id == sender && !member.receiveOwnBroadcasts) ? nil : state.connections[id]
            }
        }
        guard let targets else { return false }
        send(PhoenixMessage(topic: topic, event: "broadcast", payload: payload), to: targets)
        return true
    }

    /// Delivers a message stored in `realtime.messages` (by `realtime.send` or `broadcast_changes`) to the topic's
    /// channels of the same privacy, encoded once per format. With coalescing, a ticket type's `availability`
    /// broadcasts on `event:<id>:availability` reach the channels that accept coalescing at most once per window, the
    /// newest (see ``coalescedBroadcastKey(_:)``).
    public func publishDatabaseBroadcast(_ record: JSONObject, committed: Date? = nil) {
        let key = coalescing != nil ? Self.coalescedBroadcastKey(record) : nil
        let now = key != nil ? coalescing?.timer.now() : nil
        var armed: ContinuousClock.Instant?
        let topic = record["topic"]?.stringValue.map { "realtime:\($0)" }
        let delivery = state.withLock { state -> BroadcastDelivery? in
            var audience = FanOut.Audience.everyone
            // a topic nobody has joined needs no window (and no timer)
            if let key, let now, state.coalescer != nil, let topic, state.members[topic] != nil {
                if state.coalescer?.offer(.broadcast(record, committed: committed), key: key, now: now) == .held { audience = .notCoalesced }
                armed = state.armFlush()
            }
            return Self.databaseBroadcastTargets(record, committed: committed, to: audience, in: &state)
        }
        if let armed { scheduleFlush(at: armed) }
        if let delivery { deliver(delivery) }
    }

    /// The coalescing key of a database broadcast that may be coalesced, nil for any other: only Marquee's public
    /// `availability` event on `event:<id>:availability`, whose payload is a ticket type's whole state (counts,
    /// status, version), so the newest replaces the ones before it; one key per ticket type. Never `status` events
    /// (each is a transition worth seeing) nor any other topic or event (a message is not a state).
    static func coalescedBroadcastKey(_ record: JSONObject) -> String? {
        guard record["private"]?.boolValue == false, record["extension"]?.stringValue ?? "broadcast" == "broadcast",
            record["event"]?.stringValue == "availability", let name = record["topic"]?.stringValue, name.hasPrefix("event:"),
            name.hasSuffix(":availability"), let ticketType = record["payload"]?["ticket_type_id"]?.stringValue
        else { return nil }
        return "\(name)|\(ticketType)"
    }

    /// A database broadcast's frame and the live sockets to queue it on.
    struct BroadcastDelivery {
        var targets: [ConnectionHandle]
        var message: PhoenixMessage
        var encoded: [PhoenixSerializer: WireFrame]
        var committed: Date?
    }

    /// The live members of the broadcast's topic (of the same privacy, in `audience`) to send it to; members still
    /// replaying stored messages get it appended to what they will receive after the replay.
    static func databaseBroadcastTargets(
        _ record: JSONObject, committed: Date?, to audience: FanOut.Audience, in state: inout State
    ) -> BroadcastDelivery? {
        guard record["extension"]?.stringValue ?? "broadcast" == "broadcast", let name = record["topic"]?.stringValue,
            let id = record["id"]?.stringValue
        else { return nil }
        let isPrivate = record["private"]?.boolValue ?? true
        let topic = "realtime:\(name)"
        guard let members = state.members[topic] else { return nil }
        let message = Self.databaseBroadcastMessage(topic: topic, record: record, replayed: false)
        var encoded: [PhoenixSerializer: WireFrame] = [:]
        var live: [ConnectionHandle] = []
        for (connectionID, member) in members where member.isPrivate == isPrivate && !member.replayed.contains(id) {
            switch audience {
            case .everyone: break
            case .notCoalesced: if member.coalesces { continue }
            case .coalesced: if !member.coalesces { continue }
            }
            guard let connection = state.connections[connectionID] else { continue }
            if member.pending != nil {
                let frame = encoded[connection.serializer] ?? WireFrame(text: connection.serializer.encode(message))
                encoded[connection.serializer] = frame
                state.members[topic]?[connectionID]?.pending?.append((id, frame))
            } else {
                live.append(connection)
            }
        }
        return live.isEmpty ? nil : BroadcastDelivery(targets: live, message: message, encoded: encoded, committed: committed)
    }

    /// Queues a database broadcast on its sockets, encoded once per format.
    func deliver(_ delivery: BroadcastDelivery) {
        var encoded = delivery.encoded
        var queued = 0
        var bytes = 0
        for target in delivery.targets {
            let wire = encoded[target.serializer] ?? WireFrame(text: target.serializer.encode(delivery.message))
            encoded[target.serializer] = wire
            let frame: OutboundFrame = delivery.committed.map { .change(wire, committed: $0) } ?? .message(wire)
            switch target.outbox.offer(frame) {
            case .queued:
                queued += 1
                bytes += wire.payloadLength
            case .overflowedNow: metrics.slowConsumerDrops.increment()
            case .rejected: break
            }
        }
        if let committed = delivery.committed { metrics.recordQueued(committed: committed) }
        metrics.recordFanOut(sockets: delivery.targets.count, queued: queued, bytes: bytes)
    }

    /// Ends a channel's replay: queues the live messages that arrived meanwhile, except those already replayed.
    func finishReplay(connectionID: Int, topic: String, replayedIDs: Set<String>) {
        let (connection, pending): (ConnectionHandle?, [(id: String, frame: WireFrame)]) = state.withLock { state in
            let pending = state.members[topic]?[connectionID]?.pending ?? []
            state.members[topic]?[connectionID]?.pending = nil
            state.members[topic]?[connectionID]?.replayed = replayedIDs
            return (state.connections[connectionID], pending)
        }
        for item in pending where !replayedIDs.contains(item.id) { connection?.outbox.enqueue(.message(item.frame)) }
    }

    /// The `broadcast` frame of a stored message: `{type, event, payload, meta: {id[, replayed]}}`.
    static func databaseBroadcastMessage(topic: String, record: JSONObject, replayed: Bool) -> PhoenixMessage {
        var meta: JSONObject = ["id": record["id"] ?? .null]
        if replayed { meta["replayed"] = true }
        let payload: JSONValue = [JSONValue.null].contains(record["payload"] ?? .null) ? .object([:]) : (record["payload"] ?? .object([:]))
        return PhoenixMessage(
            topic: topic, event: "broadcast",
            payload: .object([
                "type": "broadcast", "event": record["event"] ?? .null, "payload": payload, "meta": .object(meta),
            ]))
    }

    /// Tracks `payload` as this connection's meta under `key` on the channel's topic (Phoenix semantics: a key holds
    /// one meta per connection that tracks it, each with its own `phx_ref`; tracking again replaces this connection's
    /// meta). Public and private channels of one name have separate presence.
    func trackPresence(topic: String, key: String, connectionID: Int, payload: JSONObject) {
        let result: (scope: PresenceScope, meta: JSONObject, previous: JSONObject?)? = state.withLock { state in
            guard let member = state.members[topic]?[connectionID] else { return nil }
            let scope = PresenceScope(topic: topic, isPrivate: member.isPrivate)
            state.nextPresenceRef += 1
            var meta = payload
            meta["phx_ref"] = .string("mq\(state.nextPresenceRef)")
            let previous = state.presence[scope]?.remove(connection: connectionID)
            if let previousKey = previous?.key, previousKey == key, let previousRef = previous?.meta["phx_ref"] { meta["phx_ref_prev"] = previousRef }
            state.presence[scope, default: PresenceTopic()].track(key: key, connection: connectionID, meta: meta)
            return (scope, meta, previous?.meta)
        }
        guard let result else { return }
        // the previous meta leaves under its own key (the same one: a channel's key is fixed at join)
        sendPresenceDiff(scope: result.scope, joins: [key: [result.meta]], leaves: result.previous.map { [key: [$0]] } ?? [:])
    }

    func untrackPresence(topic: String, connectionID: Int) {
        let left: (scope: PresenceScope, key: String, meta: JSONObject)? = state.withLock { state in
            Self.removePresence(topic: topic, connectionID: connectionID, isPrivate: state.members[topic]?[connectionID]?.isPrivate, in: &state)
        }
        if let left { sendPresenceDiff(scope: left.scope, joins: [:], leaves: [left.key: [left.meta]]) }
    }

    /// Removes what a connection tracked on a topic (of its channel's privacy, or of either when unknown).
    static func removePresence(
        topic: String, connectionID: Int, isPrivate: Bool?, in state: inout State
    ) -> (scope: PresenceScope, key: String, meta: JSONObject)? {
        for privacy in isPrivate.map({ [$0] }) ?? [false, true] {
            let scope = PresenceScope(topic: topic, isPrivate: privacy)
            guard let removed = state.presence[scope]?.remove(connection: connectionID) else { continue }
            if state.presence[scope]?.isEmpty == true { state.presence[scope] = nil }
            return (scope, removed.key, removed.meta)
        }
        return nil
    }

    /// The `presence_state` payload of a topic as a channel of this connection sees it (its privacy's presence).
    func presenceState(topic: String, connectionID: Int) -> JSONValue {
        let tracked: PresenceTopic? = state.withLock { state in
            guard let member = state.members[topic]?[connectionID] else { return nil }
            return state.presence[PresenceScope(topic: topic, isPrivate: member.isPrivate)]
        }
        var object = JSONObject()
        for (key, metas) in tracked?.metasByKey() ?? [] {
            object[key] = .object(["metas": .array(metas.map { .object($0) })])
        }
        return .object(object)
    }

    func sendPresenceDiff(scope: PresenceScope, joins: [String: [JSONObject]], leaves: [String: [JSONObject]]) {
        func section(_ entries: [String: [JSONObject]]) -> JSONValue {
            .object(
                JSONObject(
                    entries.sorted(by: { $0.key < $1.key }).map { (key: $0.key, value: .object(["metas": .array($0.value.map { .object($0) })])) })
            )
        }
        let targets: [ConnectionHandle] = state.withLock { state in
            (state.members[scope.topic] ?? [:]).compactMap { id, member in member.isPrivate == scope.isPrivate ? state.connections[id] : nil }
        }
        send(
            PhoenixMessage(topic: scope.topic, event: "presence_diff", payload: .object(["joins": section(joins), "leaves": section(leaves)])),
            to: targets)
    }

    /// Encodes once per format and queues on each target.
    private func send(_ message: PhoenixMessage, to targets: [ConnectionHandle]) {
        var encoded: [PhoenixSerializer: WireFrame] = [:]
        var queued = 0
        var bytes = 0
        for target in targets {
            let frame = encoded[target.serializer] ?? WireFrame(text: target.serializer.encode(message))
            encoded[target.serializer] = frame
            if target.outbox.enqueue(.message(frame)) {
                queued += 1
                bytes += frame.payloadLength
            }
        }
        if queued > 0 {
            metrics.deliveries.increment(by: queued)
            metrics.bytesOut.increment(by: bytes)
        }
    }
}
