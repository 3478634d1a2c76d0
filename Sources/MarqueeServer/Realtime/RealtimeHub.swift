import Foundation
import MarqueeCore
import NIOCore
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

/// The router and fan-out: it indexes every channel's bindings and, for each committed change, finds the channels it
/// concerns, encodes the frame once per (topic, ids, format, audience) and queues the same text on every socket.
public final class RealtimeHub: Sendable {
    /// A (connection, topic) channel (the topic's text is shared, not copied into a key of its own).
    struct ChannelKey: Hashable, Sendable {
        var connection: Int
        var topic: String
    }

    struct Member: Sendable {
        var joinRef: String?
        var receiveOwnBroadcasts: Bool
        var isPrivate = false
        /// While stored messages are being replayed, live database broadcasts wait here (id, text).
        var pending: [(id: String, frame: WireFrame)]?
        /// Ids of the messages replayed at join (at most the replay limit): the feed may still bring them live.
        var replayed: Set<String> = []
        /// Whether it gets a ticket type's availability broadcasts at most once per coalescing window.
        var coalesces = false
    }

    /// What the coalescer holds back: a row version for the coalesced postgres_changes bindings, or a database
    /// broadcast for the coalescing members of its topic.
    enum CoalescedItem: Sendable {
        case row(RowChange)
        case broadcast(JSONObject, committed: Date?)
    }

    struct State: Sendable {
        var connections: [Int: ConnectionHandle] = [:]
        var tables: [String: TableIndex] = [:]
        var channelSubscriptions: [ChannelKey: [Subscription]] = [:]  // a channel's subscriptions
        var channelEntries: [ChannelKey: [IndexedSubscription]] = [:]  // a channel's indexed bindings
        var shapes: [FrameShapeKey: (shape: FrameShape, users: Int)] = [:]
        var nextChannelUID = 0
        var members: [String: [Int: Member]] = [:]  // topic → connection → member
        var presence: [PresenceScope: PresenceTopic] = [:]
        var nextUID = 0
        var nextPresenceRef = 0
        var topicBuckets: [String: TokenBucket] = [:]
        var connectionsByKey: [String: Int] = [:]  // "ip:<addr>" / "user:<sub>" → open sockets
        var coalescer: Coalescer<ContinuousClock.Instant, CoalescedItem>?
        /// When the coalescing timer is set to fire next.
        var flushAt: ContinuousClock.Instant?

        /// The instant to set the coalescing timer for, when a window ends before any timer already set.
        mutating func armFlush() -> ContinuousClock.Instant? {
            guard let deadline = coalescer?.nextDeadline else { return nil }
            if let flushAt, flushAt <= deadline { return nil }
            flushAt = deadline
            return deadline
        }

        /// The one shape for `key`, counted once more.
        mutating func internShape(_ key: FrameShapeKey) -> FrameShape {
            if let existing = shapes[key] {
                shapes[key] = (existing.shape, existing.users + 1)
                return existing.shape
            }
            let shape = FrameShape(key)
            shapes[key] = (shape, 1)
            return shape
        }

        /// Indexes a channel's bindings (given their uids here); returns them with their index entries.
        mutating func index(
            _ subscriptions: [Subscription], connection: ConnectionHandle, topic: String, channelUID: Int
        ) -> ([Subscription], [IndexedSubscription]) {
            let perTable = RealtimeHub.countByTable(subscriptions)
            var added: [Subscription] = []
            var entries: [IndexedSubscription] = []
            for var subscription in subscriptions {
                nextUID += 1
                subscription.uid = nextUID
                var shape: FrameShape?
                if perTable[subscription.table, default: 0] == 1 {
                    shape = internShape(
                        FrameShapeKey(topic: topic, ids: [subscription.bindingID], serializer: connection.serializer, select: subscription.select))
                }
                let entry = IndexedSubscription(
                    subscription, uid: subscription.uid, connection: connection, checksFilter: TableIndex.placement(subscription.filter).checksFilter,
                    shape: shape, channelUID: channelUID,
                    coalesces: coalescer != nil && RealtimeHub.coalesces(subscription, soleBindingOfTable: shape != nil))
                tables[subscription.table, default: TableIndex()].insert(entry)
                added.append(subscription)
                entries.append(entry)
            }
            return (added, entries)
        }

        mutating func removeFromIndex(_ entries: [IndexedSubscription]) {
            for entry in entries {
                tables[entry.table]?.remove(entry)
                if tables[entry.table]?.isEmpty == true { tables[entry.table] = nil }
                if let shape = entry.shape, let interned = shapes[shape.key] {
                    shapes[shape.key] = interned.users > 1 ? (interned.shape, interned.users - 1) : nil
                }
            }
        }
    }

    public let policy: SubscriptionPolicy
    let state = Mutex(State())
    let metrics: HubMetrics
    /// Whether joins are told `Subscribed to PostgreSQL` now or once the change feed streams (see ``FeedGate``).
    public let feedGate = FeedGate()
    /// Client broadcasts per second per topic (bursts of twice as many); nil for no limit.
    let broadcastsPerSecond: Double?
    /// What presence one topic may carry.
    let presenceLimits: PresenceLimits

    /// Latest-wins coalescing of availability rows (see ``coalesces(_:soleBindingOfTable:)``); nil sends every version.
    let coalescing: Coalescing?

    /// How availability rows are coalesced: at most one version of a row per `interval` to each coalesced binding,
    /// the newest; `timer` tells the time and runs the end of each window.
    public struct Coalescing: Sendable {
        public var interval: Duration
        public var timer: any CoalescingTimer
        public init(interval: Duration, timer: any CoalescingTimer) {
            self.interval = interval
            self.timer = timer
        }
    }

    public init(
        policy: SubscriptionPolicy = .standard, metrics: HubMetrics = HubMetrics(), broadcastsPerSecond: Double? = 100, coalescing: Coalescing? = nil,
        presenceLimits: PresenceLimits = PresenceLimits()
    ) {
        self.presenceLimits = presenceLimits
        self.policy = policy
        self.metrics = metrics
        self.broadcastsPerSecond = broadcastsPerSecond
        self.coalescing = coalescing.flatMap { $0.interval > .zero ? $0 : nil }
        if let coalescing = self.coalescing {
            state.withLock { $0.coalescer = Coalescer(interval: coalescing.interval) }
        }
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
        let (isNewChannel, replaced) = state.withLock { state in
            let channelKey = ChannelKey(connection: connectionID, topic: topic)
            let isNew = state.members[topic]?[connectionID] == nil
            // a channel joined again without leaving first loses its earlier bindings
            state.removeFromIndex(state.channelEntries.removeValue(forKey: channelKey) ?? [])
            let replaced = state.channelSubscriptions.removeValue(forKey: channelKey) ?? []
            if let connection = state.connections[connectionID] {
                state.nextChannelUID += 1
                let (added, entries) = state.index(subscriptions, connection: connection, topic: topic, channelUID: state.nextChannelUID)
                state.channelSubscriptions[channelKey] = added
                state.channelEntries[channelKey] = entries
            }
            state.members[topic, default: [:]][connectionID] = Member(
                joinRef: joinRef, receiveOwnBroadcasts: membership.receiveOwnBroadcasts, isPrivate: membership.isPrivate,
                pending: membership.replaySince != nil ? [] : nil, coalesces: state.coalescer != nil && membership.coalesce)
            return (isNew, replaced)
        }
        if isNewChannel { metrics.channels.increment() }
        for (table, count) in Self.countByTable(replaced) { metrics.subscriptionsChanged(table: table, by: -count) }
        for (table, count) in Self.countByTable(subscriptions) { metrics.subscriptionsChanged(table: table, by: count) }
    }

    /// A channel's token changed: its bindings see rows as `viewer` from now on (redaction follows the token at once).
    /// Bindings whose filter the new viewer may not use (another user's rows) are removed; returns their ids.
    func updateViewer(connectionID: Int, topic: String, viewer: Viewer) -> [Int64] {
        let policy = self.policy
        let dropped: [Subscription] = state.withLock { state in
            let channelKey = ChannelKey(connection: connectionID, topic: topic)
            guard let subscriptions = state.channelSubscriptions[channelKey], let connection = state.connections[connectionID] else { return [] }
            let old = state.channelEntries.removeValue(forKey: channelKey) ?? []
            state.removeFromIndex(old)
            var kept: [Subscription] = []
            var dropped: [Subscription] = []
            for var subscription in subscriptions {
                if subscription.filter.conditions.allSatisfy({ policy.mayFilter($0, table: subscription.table, viewer: viewer) }) {
                    subscription.viewer = viewer
                    kept.append(subscription)
                } else {
                    dropped.append(subscription)
                }
            }
            let channelUID: Int
            if let uid = old.first?.channelUID {
                channelUID = uid
            } else {
                state.nextChannelUID += 1
                channelUID = state.nextChannelUID
            }
            let (added, entries) = state.index(kept, connection: connection, topic: topic, channelUID: channelUID)
            state.channelSubscriptions[channelKey] = added
            state.channelEntries[channelKey] = entries
            return dropped
        }
        for (table, count) in Self.countByTable(dropped) { metrics.subscriptionsChanged(table: table, by: -count) }
        return dropped.map(\.bindingID)
    }

    /// Removes a channel's bindings, membership and presence.
    public func leave(connectionID: Int, topic: String) {
        let (removed, wasMember, left): ([Subscription], Bool, (scope: PresenceScope, key: String, meta: JSONObject)?) = state.withLock { state in
            let channelKey = ChannelKey(connection: connectionID, topic: topic)
            let subscriptions = state.channelSubscriptions.removeValue(forKey: channelKey) ?? []
            let isPrivate = state.members[topic]?[connectionID]?.isPrivate
            let wasMember = isPrivate != nil
            state.removeFromIndex(state.channelEntries.removeValue(forKey: channelKey) ?? [])
            state.members[topic]?[connectionID] = nil
            let left = Self.removePresence(topic: topic, connectionID: connectionID, isPrivate: isPrivate, in: &state)
            if state.members[topic]?.isEmpty == true {
                state.members[topic] = nil
                state.presence[PresenceScope(topic: topic, isPrivate: false)] = nil
                state.presence[PresenceScope(topic: topic, isPrivate: true)] = nil
            }
            return (subscriptions, wasMember, left)
        }
        if wasMember { metrics.channels.decrement() }
        for (table, count) in Self.countByTable(removed) { metrics.subscriptionsChanged(table: table, by: -count) }
        if let left { sendPresenceDiff(scope: left.scope, joins: [:], leaves: [left.key: [left.meta]]) }
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
                for connection in members.keys {
                    list.append((topic, state.channelSubscriptions[ChannelKey(connection: connection, topic: topic)] ?? []))
                }
            }
            return list
        }
        var counts: [UUID: Int] = [:]
        for channel in channels {
            if let event = EventAnalytics.eventID(topic: channel.topic, subscriptions: channel.subscriptions) { counts[event, default: 0] += 1 }
        }
        return counts
    }
    /// Distinct frame shapes in use (bindings that get the same bytes share one).
    var frameShapeCount: Int { state.withLock { $0.shapes.count } }

    public var subscriptionCount: Int { state.withLock { $0.channelSubscriptions.values.reduce(0) { $0 + $1.count } } }

    // MARK: Changes

    /// Delivers committed row changes, in order, to every matching channel.
    public func publish(_ changes: [RowChange]) {
        for change in changes { publish(change) }
    }

    public func publish(_ change: RowChange) {
        // an UPDATE of a ticket type may be held back for the coalesced bindings (latest wins per row)
        var rowKey: String?
        if coalescing != nil, change.kind == .update, change.schema == Self.coalescedTable.schema, change.table == Self.coalescedTable.table,
            let id = change.record?["id"]
        {
            rowKey = ChangeFilter.canonicalText(id)
        }
        let now = rowKey != nil ? coalescing?.timer.now() : nil
        var armed: ContinuousClock.Instant?
        let fanOut = state.withLock { state -> FanOut in
            var audience = FanOut.Audience.everyone
            if let rowKey, let now, state.coalescer != nil {
                if state.coalescer?.offer(.row(change), key: rowKey, now: now) == .held { audience = .notCoalesced }
                armed = state.armFlush()
            }
            return Self.fanOut(change, to: audience, in: state, policy: policy)
        }
        if let armed { scheduleFlush(at: armed) }
        record(fanOut)
    }

    /// The table whose UPDATEs may be coalesced, and the columns a coalesced binding's filter may use: its identity
    /// columns, which the application never changes, so every version of a row reaches the same bindings.
    static let coalescedTable = (schema: "public", table: "event_tickets", key: "public.event_tickets", filterColumns: Set(["id", "event_id"]))

    /// Whether a binding's changes may be coalesced (latest wins per row): UPDATEs only, of `public.event_tickets`,
    /// filtered by nothing but the row's identity (`id`, `event_id`), and the channel's only binding on that table.
    static func coalesces(_ subscription: Subscription, soleBindingOfTable: Bool) -> Bool {
        subscription.coalesce && soleBindingOfTable && subscription.table == coalescedTable.key && subscription.events == .only(.update)
            && subscription.filter.conditions.allSatisfy { coalescedTable.filterColumns.contains($0.column) }
    }

    /// Sends the newest pending version of every row (and availability broadcast) whose window has ended to the
    /// coalesced bindings (and members).
    func flushCoalesced(scheduledFor deadline: ContinuousClock.Instant) {
        guard let coalescing else { return }
        let now = coalescing.timer.now()
        var armed: ContinuousClock.Instant?
        var broadcasts: [BroadcastDelivery] = []
        let fanOuts = state.withLock { state -> [FanOut] in
            if state.flushAt == deadline { state.flushAt = nil }
            var fanOuts: [FanOut] = []
            for item in state.coalescer?.due(now: now) ?? [] {
                switch item {
                case .row(let change): fanOuts.append(Self.fanOut(change, to: .coalesced, in: state, policy: policy))
                case .broadcast(let record, let committed):
                    if let delivery = Self.databaseBroadcastTargets(record, committed: committed, to: .coalesced, in: &state) {
                        broadcasts.append(delivery)
                    }
                }
            }
            armed = state.armFlush()
            return fanOuts
        }
        if let armed { scheduleFlush(at: armed) }
        for fanOut in fanOuts { record(fanOut) }
        for delivery in broadcasts { deliver(delivery) }
    }

    func scheduleFlush(at deadline: ContinuousClock.Instant) {
        coalescing?.timer.schedule(at: deadline) { [weak self] in self?.flushCoalesced(scheduledFor: deadline) }
    }

    /// Rows whose coalescing window is open, and of them those with a version waiting.
    var coalescingRows: (open: Int, pending: Int) { state.withLock { ($0.coalescer?.count ?? 0, $0.coalescer?.pendingCount ?? 0) } }

    /// Matches a change, encodes its frames and queues them (under the hub's lock: nothing is copied per binding, and
    /// the feed is the only publisher of changes, so a socket receives them in commit order).
    private static func fanOut(_ change: RowChange, to audience: FanOut.Audience, in state: State, policy: SubscriptionPolicy) -> FanOut {
        let tableKey = "\(change.schema).\(change.table)"
        let kind = change.kind
        let rule = policy.tables[tableKey]
        var fanOut = FanOut(change: change, visibleColumns: rule?.publicColumns)
        guard let index = state.tables[tableKey] else { return fanOut }
        // the row as the change shows it: filters are decided on the new record, or on the old one of a delete
        let row = (kind == .delete ? change.oldRecord : change.record) ?? change.record ?? change.oldRecord ?? [:]
        let everyoneSeesAll = rule?.publicColumns == nil
        let owned = change.record ?? change.oldRecord
        index.forEachMatch(kind: kind, row: row, skippingCoalesced: audience == .notCoalesced) { entry in
            switch audience {
            case .everyone: break
            case .notCoalesced: if entry.coalesces { return }
            case .coalesced: if !entry.coalesces { return }
            }
            guard let shape = entry.shape else { return fanOut.collect(entry) }
            let full = everyoneSeesAll || policy.seesEverything(table: tableKey, record: owned, viewer: entry.viewer)
            fanOut.deliver(to: entry.connection, frame: fanOut.frame(shape: shape, full: full))
        }
        fanOut.deliverCollected { entry in everyoneSeesAll || policy.seesEverything(table: tableKey, record: owned, viewer: entry.viewer) }
        return fanOut
    }

    private func record(_ fanOut: FanOut) {
        guard fanOut.sockets > 0 else { return }
        if fanOut.encodes > 0 { metrics.encodes.increment(by: fanOut.encodes) }
        if fanOut.drops > 0 { metrics.slowConsumerDrops.increment(by: fanOut.drops) }
        metrics.recordQueued(committed: fanOut.committed)
        metrics.recordFanOut(sockets: fanOut.sockets, queued: fanOut.queued, bytes: fanOut.bytes)
    }

    /// One change's fan-out: its frames, encoded once per shape and audience, and what became of them.
    struct FanOut {
        /// Which of the matching bindings a fan-out reaches.
        enum Audience {
            case everyone
            /// A version held back for the coalesced bindings: only the others get it now.
            case notCoalesced
            /// A coalesced version whose window ended: only the coalesced bindings get it (the others had it).
            case coalesced
        }

        let change: RowChange
        let visibleColumns: Set<String>?
        let committed: Date
        var sockets = 0
        var queued = 0
        var bytes = 0
        var drops = 0
        var encodes = 0
        private var lastShape: FrameShape?
        private var lastFull = false
        private var lastFrame: WireFrame?
        private var frames: [FrameCacheKey: WireFrame] = [:]
        /// Channels with several bindings on the table: their matching binding ids, in order of first match.
        private var collected: [Int: (entry: IndexedSubscription, ids: [Int64])] = [:]
        private var collectedOrder: [Int] = []

        struct FrameCacheKey: Hashable {
            var shape: FrameShapeKey
            var full: Bool
        }

        init(change: RowChange, visibleColumns: Set<String>?) {
            self.change = change
            self.visibleColumns = visibleColumns
            self.committed = change.commitTimestamp.date
        }

        /// The frame of this change for a shape and audience, encoded the first time it is asked for.
        mutating func frame(shape: FrameShape, full: Bool) -> WireFrame {
            if shape === lastShape && full == lastFull, let lastFrame { return lastFrame }
            let frame = frame(key: FrameCacheKey(shape: shape.key, full: full))
            lastShape = shape
            lastFull = full
            lastFrame = frame
            return frame
        }

        private mutating func frame(key: FrameCacheKey) -> WireFrame {
            if let cached = frames[key] { return cached }
            let payload = ChangePayload.build(
                change: change, kind: change.kind, ids: key.shape.ids, visibleColumns: key.full ? nil : visibleColumns, select: key.shape.select)
            let frame = WireFrame(
                text: key.shape.serializer.encode(PhoenixMessage(topic: key.shape.topic, event: "postgres_changes", payload: payload)))
            frames[key] = frame
            encodes += 1
            return frame
        }

        mutating func deliver(to connection: ConnectionHandle, frame: WireFrame) {
            sockets += 1
            switch connection.outbox.offer(.change(frame, committed: committed)) {
            case .queued:
                queued += 1
                bytes += frame.payloadLength
            case .overflowedNow: drops += 1
            case .rejected: break
            }
        }

        mutating func collect(_ entry: IndexedSubscription) {
            if collected[entry.channelUID] == nil {
                collected[entry.channelUID] = (entry, [entry.bindingID])
                collectedOrder.append(entry.channelUID)
            } else if collected[entry.channelUID]?.ids.contains(entry.bindingID) == false {
                collected[entry.channelUID]?.ids.append(entry.bindingID)
            }
        }

        /// One frame per collected channel, listing every binding of it that matched.
        mutating func deliverCollected(seesEverything: (IndexedSubscription) -> Bool) {
            for channel in collectedOrder {
                guard let (entry, ids) = collected[channel] else { continue }
                let key = FrameShapeKey(topic: entry.topic, ids: ids.sorted(), serializer: entry.connection.serializer, select: entry.select)
                deliver(to: entry.connection, frame: frame(key: FrameCacheKey(shape: key, full: seesEverything(entry))))
            }
        }
    }
}
