import Foundation
import MarqueeCore
import Synchronization

/// A connected socket as the hub sees it: where to queue frames and in which format.
public final class ConnectionHandle: Sendable {
    public let id: Int
    public let serializer: PhoenixSerializer
    public let outbox: Outbox

    public init(id: Int, serializer: PhoenixSerializer, outbox: Outbox) {
        self.id = id
        self.serializer = serializer
        self.outbox = outbox
    }
}

/// One binding of one channel, as the router indexes it.
public struct Subscription: Sendable {
    var uid: Int
    var connection: Int
    var topic: String
    var bindingID: Int64
    var table: String
    var events: ChangeKindFilter
    var filter: ChangeFilter
    var select: [String]?
    var viewer: Viewer
}

/// Subscriptions of one table: those with an `eq` condition are found by (column, value); the rest are scanned.
struct TableIndex: Sendable {
    var byValue: [String: [String: [Int: Subscription]]] = [:]
    var scanned: [Int: Subscription] = [:]
    var isEmpty: Bool { byValue.isEmpty && scanned.isEmpty }

    mutating func insert(_ subscription: Subscription) {
        if let key = subscription.filter.indexKey {
            byValue[key.column, default: [:]][key.value, default: [:]][subscription.uid] = subscription
        } else {
            scanned[subscription.uid] = subscription
        }
    }

    mutating func remove(_ subscription: Subscription) {
        if let key = subscription.filter.indexKey {
            byValue[key.column]?[key.value]?[subscription.uid] = nil
            if byValue[key.column]?[key.value]?.isEmpty == true { byValue[key.column]?[key.value] = nil }
            if byValue[key.column]?.isEmpty == true { byValue[key.column] = nil }
        } else {
            scanned[subscription.uid] = nil
        }
    }

    /// Subscriptions whose filter may match a row (its new or old values); the filter itself is checked by the caller.
    func candidates(record: JSONObject?, oldRecord: JSONObject?) -> [Subscription] {
        var result = Array(scanned.values)
        for (column, values) in byValue {
            var seen = Set<String>()
            for row in [record, oldRecord] {
                guard let value = row?[column], let text = ChangeFilter.canonicalText(value), seen.insert(text).inserted else { continue }
                if let matches = values[text] { result.append(contentsOf: matches.values) }
            }
        }
        return result
    }
}

/// The router and fan-out: it indexes every channel's bindings and, for each committed change, finds the channels it
/// concerns, encodes the frame once per (topic, ids, format, audience) and queues the same text on every socket.
public final class RealtimeHub: Sendable {
    struct Member: Sendable {
        var joinRef: String?
        var receiveOwnBroadcasts: Bool
        var isPrivate = false
        /// While stored messages are being replayed, live database broadcasts wait here (id, text).
        var pending: [(id: String, text: String)]?
        /// Ids of the messages replayed at join (at most the replay limit): the feed may still bring them live.
        var replayed: Set<String> = []
    }

    struct State: Sendable {
        var connections: [Int: ConnectionHandle] = [:]
        var tables: [String: TableIndex] = [:]
        var channelSubscriptions: [String: [Subscription]] = [:]  // "connection|topic" → its subscriptions
        var members: [String: [Int: Member]] = [:]  // topic → connection → member
        var presence: [String: [String: (connection: Int, meta: JSONObject)]] = [:]  // topic → key → tracked
        var nextUID = 0
        var nextPresenceRef = 0
        var topicBuckets: [String: TokenBucket] = [:]
        var connectionsByKey: [String: Int] = [:]  // "ip:<addr>" / "user:<sub>" → open sockets
    }

    public let policy: SubscriptionPolicy
    private let state = Mutex(State())
    let metrics: HubMetrics
    /// Client broadcasts per second per topic (bursts of twice as many); nil for no limit.
    let broadcastsPerSecond: Double?

    public init(policy: SubscriptionPolicy = .standard, metrics: HubMetrics = HubMetrics(), broadcastsPerSecond: Double? = 100) {
        self.policy = policy
        self.metrics = metrics
        self.broadcastsPerSecond = broadcastsPerSecond
    }

    /// Counts a socket against each of `keys` (its address, its user), unless one is at `limit`; returns the key that
    /// is full, or nil when the socket was counted.
    func admit(keys: [(key: String, limit: Int)]) -> String? {
        state.withLock { state in
            for (key, limit) in keys where state.connectionsByKey[key, default: 0] >= limit { return key }
            for (key, _) in keys { state.connectionsByKey[key, default: 0] += 1 }
            return nil
        }
    }

    func release(keys: [String]) {
        state.withLock { state in
            for key in keys {
                let count = state.connectionsByKey[key, default: 0] - 1
                state.connectionsByKey[key] = count > 0 ? count : nil
            }
        }
    }

    // MARK: Connections and channels

    public func register(_ connection: ConnectionHandle) {
        state.withLock { $0.connections[connection.id] = connection }
        metrics.connections.increment()
    }

    /// Forgets a connection and every channel it had; presence it tracked leaves.
    public func unregister(_ connectionID: Int) {
        let topics: [String] = state.withLock { state in
            state.connections[connectionID] = nil
            return state.members.compactMap { $0.value[connectionID] != nil ? $0.key : nil }
        }
        for topic in topics { leave(connectionID: connectionID, topic: topic) }
        metrics.connections.decrement()
    }

    /// Adds a channel's bindings (already validated) and its membership for broadcast.
    func join(connectionID: Int, topic: String, joinRef: String?, subscriptions: [Subscription], receiveOwnBroadcasts: Bool) {
        join(
            connectionID: connectionID, topic: topic, joinRef: joinRef, subscriptions: subscriptions,
            membership: .init(receiveOwnBroadcasts: receiveOwnBroadcasts, isPrivate: false, replaySince: nil, replayLimit: 0))
    }

    func join(connectionID: Int, topic: String, joinRef: String?, subscriptions: [Subscription], membership: RealtimeSession.Membership) {
        let isNewChannel = state.withLock { state in
            let channelKey = "\(connectionID)|\(topic)"
            let isNew = state.members[topic]?[connectionID] == nil
            var added: [Subscription] = []
            for var subscription in subscriptions {
                state.nextUID += 1
                subscription.uid = state.nextUID
                state.tables[subscription.table, default: TableIndex()].insert(subscription)
                added.append(subscription)
            }
            state.channelSubscriptions[channelKey] = added
            state.members[topic, default: [:]][connectionID] = Member(
                joinRef: joinRef, receiveOwnBroadcasts: membership.receiveOwnBroadcasts, isPrivate: membership.isPrivate,
                pending: membership.replaySince != nil ? [] : nil)
            return isNew
        }
        if isNewChannel { metrics.channels.increment() }
        for (table, count) in Self.countByTable(subscriptions) { metrics.subscriptionsChanged(table: table, by: count) }
    }

    /// Removes a channel's bindings, membership and presence.
    public func leave(connectionID: Int, topic: String) {
        let (removed, wasMember, left): ([Subscription], Bool, (key: String, meta: JSONObject)?) = state.withLock { state in
            let channelKey = "\(connectionID)|\(topic)"
            let subscriptions = state.channelSubscriptions.removeValue(forKey: channelKey) ?? []
            let wasMember = state.members[topic]?[connectionID] != nil
            for subscription in subscriptions {
                state.tables[subscription.table]?.remove(subscription)
                if state.tables[subscription.table]?.isEmpty == true { state.tables[subscription.table] = nil }
            }
            state.members[topic]?[connectionID] = nil
            if state.members[topic]?.isEmpty == true { state.members[topic] = nil }
            var left: (key: String, meta: JSONObject)?
            if let entry = state.presence[topic]?.first(where: { $0.value.connection == connectionID }) {
                state.presence[topic]?[entry.key] = nil
                left = (entry.key, entry.value.meta)
            }
            return (subscriptions, wasMember, left)
        }
        if wasMember { metrics.channels.decrement() }
        for (table, count) in Self.countByTable(removed) { metrics.subscriptionsChanged(table: table, by: -count) }
        if let left { sendPresenceDiff(topic: topic, joins: [:], leaves: [left.key: left.meta]) }
    }

    public var connectionCount: Int { state.withLock { $0.connections.count } }

    static func countByTable(_ subscriptions: [Subscription]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for subscription in subscriptions { counts[subscription.table, default: 0] += 1 }
        return counts
    }

    /// Bindings per table, counted from the index (what `marquee_realtime_subscriptions` should say).
    public func subscriptionsByTable() -> [String: Int] {
        state.withLock { Self.countByTable($0.channelSubscriptions.values.flatMap { $0 }) }
    }

    /// Joined channels per event they are about (by `event_id=eq.` filter or `event:<id>:…` topic), for the dashboard.
    func channelsPerEvent() -> [UUID: Int] {
        let channels: [(topic: String, subscriptions: [Subscription])] = state.withLock { state in
            var list: [(String, [Subscription])] = []
            for (topic, members) in state.members {
                for connection in members.keys { list.append((topic, state.channelSubscriptions["\(connection)|\(topic)"] ?? [])) }
            }
            return list
        }
        var counts: [UUID: Int] = [:]
        for channel in channels {
            if let event = EventAnalytics.eventID(topic: channel.topic, subscriptions: channel.subscriptions) { counts[event, default: 0] += 1 }
        }
        return counts
    }
    public var subscriptionCount: Int { state.withLock { $0.channelSubscriptions.values.reduce(0) { $0 + $1.count } } }

    // MARK: Changes

    /// Delivers committed row changes, in order, to every matching channel.
    public func publish(_ changes: [RowChange]) {
        for change in changes { publish(change) }
    }

    public func publish(_ change: RowChange) {
        let tableKey = "\(change.schema).\(change.table)"
        let kind = change.kind
        // match under the lock, encode and queue outside it
        let deliveries: [(connection: ConnectionHandle, topic: String, ids: [Int64], viewer: Viewer, select: [String]?)] = state.withLock {
            state in
            guard let index = state.tables[tableKey] else { return [] }
            let row = change.record ?? change.oldRecord ?? [:]
            var grouped: [String: (connection: ConnectionHandle, topic: String, ids: [Int64], viewer: Viewer, select: [String]?)] = [:]
            for subscription in index.candidates(record: change.record, oldRecord: change.oldRecord) {
                guard subscription.events.accepts(kind) else { continue }
                let visible = kind == .delete ? (change.oldRecord ?? row) : row
                guard subscription.filter.matches(visible) else { continue }
                guard let connection = state.connections[subscription.connection] else { continue }
                let key = "\(subscription.connection)|\(subscription.topic)"
                if grouped[key] == nil {
                    grouped[key] = (connection, subscription.topic, [], subscription.viewer, subscription.select)
                }
                if grouped[key]?.ids.contains(subscription.bindingID) == false { grouped[key]?.ids.append(subscription.bindingID) }
            }
            return Array(grouped.values)
        }
        guard !deliveries.isEmpty else { return }
        let committed = change.commitTimestamp.date
        var encoded: [String: String] = [:]
        var queued = 0
        var bytes = 0
        for delivery in deliveries {
            let full = policy.seesEverything(table: tableKey, record: change.record ?? change.oldRecord, viewer: delivery.viewer)
            let ids = delivery.ids.sorted()
            let cacheKey =
                "\(delivery.connection.serializer.rawValue)|\(full)|\(delivery.topic)|\(ids)|\(delivery.select?.joined(separator: ",") ?? "*")"
            let text: String
            if let cached = encoded[cacheKey] {
                text = cached
            } else {
                let visibleColumns = full ? nil : policy.publicColumns(table: tableKey)
                let payload = ChangePayload.build(change: change, kind: kind, ids: ids, visibleColumns: visibleColumns, select: delivery.select)
                text = delivery.connection.serializer.encode(PhoenixMessage(topic: delivery.topic, event: "postgres_changes", payload: payload))
                encoded[cacheKey] = text
                metrics.encodes.increment()
            }
            switch delivery.connection.outbox.offer(.change(text, committed: committed)) {
            case .queued:
                queued += 1
                bytes += text.utf8.count
            case .overflowedNow: metrics.slowConsumerDrops.increment()
            case .rejected: break
            }
        }
        metrics.recordQueued(committed: committed)
        metrics.recordFanOut(sockets: deliveries.count, queued: queued, bytes: bytes)
    }

    // MARK: Broadcast and presence

    /// Sends a client's broadcast to the topic's other members (and to the sender when it asked for its own); false
    /// when the topic's broadcast rate is exceeded (nothing is sent).
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
            return (state.members[topic] ?? [:]).compactMap { id, member in
                id == sender && !member.receiveOwnBroadcasts ? nil : state.connections[id]
            }
        }
        guard let targets else { return false }
        send(PhoenixMessage(topic: topic, event: "broadcast", payload: payload), to: targets)
        return true
    }

    /// Delivers a message stored in `realtime.messages` (by `realtime.send` or `broadcast_changes`) to the topic's
    /// channels of the same privacy, encoded once per format.
    public func publishDatabaseBroadcast(_ record: JSONObject, committed: Date? = nil) {
        guard record["extension"]?.stringValue ?? "broadcast" == "broadcast", let name = record["topic"]?.stringValue,
            let id = record["id"]?.stringValue
        else { return }
        let isPrivate = record["private"]?.boolValue ?? true
        let topic = "realtime:\(name)"
        let message = Self.databaseBroadcastMessage(topic: topic, record: record, replayed: false)
        var encoded: [PhoenixSerializer: String] = [:]
        let targets: [ConnectionHandle] = state.withLock { state in
            var live: [ConnectionHandle] = []
            guard let members = state.members[topic] else { return [] }
            for (connectionID, member) in members where member.isPrivate == isPrivate && !member.replayed.contains(id) {
                guard let connection = state.connections[connectionID] else { continue }
                if member.pending != nil {
                    let text = encoded[connection.serializer] ?? connection.serializer.encode(message)
                    encoded[connection.serializer] = text
                    state.members[topic]?[connectionID]?.pending?.append((id, text))
                } else {
                    live.append(connection)
                }
            }
            return live
        }
        guard !targets.isEmpty else { return }
        var queued = 0
        var bytes = 0
        for target in targets {
            let text = encoded[target.serializer] ?? target.serializer.encode(message)
            encoded[target.serializer] = text
            let frame: OutboundFrame = committed.map { .change(text, committed: $0) } ?? .text(text)
            switch target.outbox.offer(frame) {
            case .queued:
                queued += 1
                bytes += text.utf8.count
            case .overflowedNow: metrics.slowConsumerDrops.increment()
            case .rejected: break
            }
        }
        if let committed { metrics.recordQueued(committed: committed) }
        metrics.recordFanOut(sockets: targets.count, queued: queued, bytes: bytes)
    }

    /// Ends a channel's replay: queues the live messages that arrived meanwhile, except those already replayed.
    func finishReplay(connectionID: Int, topic: String, replayedIDs: Set<String>) {
        let (connection, pending): (ConnectionHandle?, [(id: String, text: String)]) = state.withLock { state in
            let pending = state.members[topic]?[connectionID]?.pending ?? []
            state.members[topic]?[connectionID]?.pending = nil
            state.members[topic]?[connectionID]?.replayed = replayedIDs
            return (state.connections[connectionID], pending)
        }
        for item in pending where !replayedIDs.contains(item.id) { connection?.outbox.enqueue(.text(item.text)) }
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

    func trackPresence(topic: String, key: String, connectionID: Int, payload: JSONObject) {
        let (meta, previous): (JSONObject, JSONObject?) = state.withLock { state in
            state.nextPresenceRef += 1
            var meta = payload
            meta["phx_ref"] = .string("mq\(state.nextPresenceRef)")
            let previous = state.presence[topic]?[key]?.meta
            if let previousRef = previous?["phx_ref"] { meta["phx_ref_prev"] = previousRef }
            state.presence[topic, default: [:]][key] = (connectionID, meta)
            return (meta, previous)
        }
        sendPresenceDiff(topic: topic, joins: [key: meta], leaves: previous.map { [key: $0] } ?? [:])
    }

    func untrackPresence(topic: String, connectionID: Int) {
        let left: (String, JSONObject)? = state.withLock { state in
            guard let entry = state.presence[topic]?.first(where: { $0.value.connection == connectionID }) else { return nil }
            state.presence[topic]?[entry.key] = nil
            return (entry.key, entry.value.meta)
        }
        if let left { sendPresenceDiff(topic: topic, joins: [:], leaves: [left.0: left.1]) }
    }

    /// The `presence_state` payload of a topic.
    func presenceState(topic: String) -> JSONValue {
        let entries = state.withLock { $0.presence[topic] ?? [:] }
        var object = JSONObject()
        for (key, entry) in entries.sorted(by: { $0.key < $1.key }) {
            object[key] = .object(["metas": .array([.object(entry.meta)])])
        }
        return .object(object)
    }

    private func sendPresenceDiff(topic: String, joins: [String: JSONObject], leaves: [String: JSONObject]) {
        func section(_ entries: [String: JSONObject]) -> JSONValue {
            .object(JSONObject(entries.sorted(by: { $0.key < $1.key }).map { (key: $0.key, value: .object(["metas": .array([.object($0.value)])])) }))
        }
        let targets: [ConnectionHandle] = state.withLock { state in
            (state.members[topic] ?? [:]).keys.compactMap { state.connections[$0] }
        }
        send(PhoenixMessage(topic: topic, event: "presence_diff", payload: .object(["joins": section(joins), "leaves": section(leaves)])), to: targets)
    }

    /// Encodes once per format and queues on each target.
    private func send(_ message: PhoenixMessage, to targets: [ConnectionHandle]) {
        var encoded: [PhoenixSerializer: String] = [:]
        var queued = 0
        var bytes = 0
        for target in targets {
            let text = encoded[target.serializer] ?? target.serializer.encode(message)
            encoded[target.serializer] = text
            if target.outbox.enqueue(.text(text)) {
                queued += 1
                bytes += text.utf8.count
            }
        }
        if queued > 0 {
            metrics.deliveries.increment(by: queued)
            metrics.bytesOut.increment(by: bytes)
        }
    }
}

/// The `postgres_changes` payload Supabase clients expect (see docs/realtime-protocol.md §5).
enum ChangePayload {
    static func build(change: RowChange, kind: RowChangeKind, ids: [Int64], visibleColumns: Set<String>?, select: [String]?) -> JSONValue {
        func keep(_ name: String) -> Bool {
            if let visibleColumns, !visibleColumns.contains(name) { return false }
            // the primary key (`id` in every published table) always comes along; pgoutput marks every column as a key
            // under REPLICA IDENTITY FULL, so its key flags cannot tell
            if let select, !select.contains(name), name != "id" { return false }
            return true
        }
        func filtered(_ record: JSONObject?) -> JSONValue {
            guard let record else { return .object([:]) }
            return .object(JSONObject(record.entries.filter { keep($0.key) }))
        }
        var data: JSONObject = [
            "schema": .string(change.schema),
            "table": .string(change.table),
            "commit_timestamp": .string(change.commitTimestampText),
            "type": .string(kind.rawValue),
            "columns": .array(change.columns.filter { keep($0.name) }.map { .object(["name": .string($0.name), "type": .string($0.typeName)]) }),
        ]
        if kind != .delete { data["record"] = filtered(change.record) }
        if kind != .insert { data["old_record"] = filtered(change.oldRecord) }
        data["errors"] = .null
        return .object(["ids": .array(ids.map { .int($0) }), "data": .object(data)])
    }
}
