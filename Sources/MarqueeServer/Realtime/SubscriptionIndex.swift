import Foundation
import MarqueeCore

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
    /// Whether the channel accepts coalescing (`config.marquee.coalesce`, default true); see `RealtimeHub.coalesces`.
    var coalesce = true
}

/// A binding as the index holds it: immutable and shared by reference, so matching a change copies nothing.
final class IndexedSubscription: Sendable {
    let uid: Int
    let connection: ConnectionHandle
    let table: String
    let topic: String
    let bindingID: Int64
    let events: ChangeKindFilter
    let filter: ChangeFilter
    /// Whether finding the binding in its bucket does not prove that its filter holds (conditions beyond the indexed one).
    let checksFilter: Bool
    let select: [String]?
    let viewer: Viewer
    /// The frame shape shared with every binding that gets the same bytes; nil when the channel has other bindings on
    /// this table, whose frame lists the ids of all of them that match (grouped per channel at publish).
    let shape: FrameShape?
    /// The (connection, topic) channel, for grouping the ids of several bindings into one frame.
    let channelUID: Int
    /// Whether it gets a row's newest version at most once per coalescing window (see `RealtimeHub.coalesces`).
    let coalesces: Bool

    init(
        _ subscription: Subscription, uid: Int, connection: ConnectionHandle, checksFilter: Bool, shape: FrameShape?, channelUID: Int,
        coalesces: Bool = false
    ) {
        self.uid = uid
        self.connection = connection
        self.table = subscription.table
        self.topic = subscription.topic
        self.bindingID = subscription.bindingID
        self.events = subscription.events
        self.filter = subscription.filter
        self.checksFilter = checksFilter
        self.select = subscription.select
        self.viewer = subscription.viewer
        self.shape = shape
        self.channelUID = channelUID
        self.coalesces = coalesces
    }
}

/// What a change frame depends on besides the change and the audience: bindings with equal keys share one
/// `FrameShape` (interned by the hub), so a change is encoded once per shape and audience.
struct FrameShapeKey: Hashable, Sendable {
    var topic: String
    var ids: [Int64]
    var serializer: PhoenixSerializer
    var select: [String]?
}

final class FrameShape: Sendable {
    let key: FrameShapeKey
    init(_ key: FrameShapeKey) { self.key = key }
}

/// Bindings in a dense array (iterated per change) with O(1) removal by uid.
struct SubscriptionBucket: Sendable {
    private(set) var entries: [IndexedSubscription] = []
    private var positions: [Int: Int] = [:]
    /// How many of the entries are coalesced bindings.
    private var coalescing = 0
    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    /// Whether every binding here is coalesced (a version held back for them concerns nobody here).
    var allCoalesce: Bool { coalescing == entries.count }

    mutating func insert(_ entry: IndexedSubscription) {
        positions[entry.uid] = entries.count
        entries.append(entry)
        if entry.coalesces { coalescing += 1 }
    }

    mutating func remove(uid: Int) {
        guard let position = positions.removeValue(forKey: uid) else { return }
        if entries[position].coalesces { coalescing -= 1 }
        let last = entries.removeLast()
        if position < entries.count {
            entries[position] = last
            positions[last.uid] = position
        }
    }
}

/// The bindings of one table: those with an indexable `eq` condition by (column, canonical value), those without any
/// condition in one bucket, and the rest (filters the index cannot prove) scanned with their filter.
struct TableIndex: Sendable {
    var byValue: [String: [String: SubscriptionBucket]] = [:]
    var unfiltered = SubscriptionBucket()
    var scanned = SubscriptionBucket()
    var isEmpty: Bool { byValue.isEmpty && unfiltered.isEmpty && scanned.isEmpty }

    /// Where a binding goes, and whether its filter must still be checked there.
    static func placement(_ filter: ChangeFilter) -> (key: (column: String, value: String)?, checksFilter: Bool) {
        if filter.conditions.isEmpty { return (nil, false) }
        if let key = filter.indexKey { return (key, filter.conditions.count > 1) }
        return (nil, true)
    }

    mutating func insert(_ entry: IndexedSubscription) {
        if let key = Self.placement(entry.filter).key {
            byValue[key.column, default: [:]][key.value, default: SubscriptionBucket()].insert(entry)
        } else if entry.filter.conditions.isEmpty {
            unfiltered.insert(entry)
        } else {
            scanned.insert(entry)
        }
    }

    mutating func remove(_ entry: IndexedSubscription) {
        if let key = Self.placement(entry.filter).key {
            byValue[key.column]?[key.value]?.remove(uid: entry.uid)
            if byValue[key.column]?[key.value]?.isEmpty == true { byValue[key.column]?[key.value] = nil }
            if byValue[key.column]?.isEmpty == true { byValue[key.column] = nil }
        } else if entry.filter.conditions.isEmpty {
            unfiltered.remove(uid: entry.uid)
        } else {
            scanned.remove(uid: entry.uid)
        }
    }

    /// Calls `body` with every binding whose filter holds for `row` (the row as the change shows it: the new record, or
    /// the old one of a delete) and that wants `kind`. Each binding is visited at most once: it sits in one bucket, and
    /// a column's value selects one bucket. With `skippingCoalesced`, buckets of coalesced bindings only are not walked
    /// (a version held back for them: 10 000 watchers of a ticket type need not be visited for each held version).
    func forEachMatch(kind: RowChangeKind, row: JSONObject, skippingCoalesced: Bool = false, _ body: (IndexedSubscription) -> Void) {
        if !(skippingCoalesced && unfiltered.allCoalesce) {
            for entry in unfiltered.entries where entry.events.accepts(kind) { body(entry) }
        }
        if !(skippingCoalesced && scanned.allCoalesce) {
            for entry in scanned.entries where entry.events.accepts(kind) && entry.filter.matches(row) { body(entry) }
        }
        for (column, values) in byValue {
            guard let value = row[column], let text = ChangeFilter.canonicalText(value), let bucket = values[text] else { continue }
            if skippingCoalesced && bucket.allCoalesce { continue }
            for entry in bucket.entries where entry.events.accepts(kind) && (!entry.checksFilter || entry.filter.matches(row)) { body(entry) }
        }
    }

    /// The bindings a change of `kind` to `row` reaches (for tests and tools).
    func matches(kind: RowChangeKind, row: JSONObject) -> [IndexedSubscription] {
        var result: [IndexedSubscription] = []
        forEachMatch(kind: kind, row: row) { result.append($0) }
        return result
    }
}
