import MarqueeCore

/// How much presence one topic (of one privacy) may carry: every join of it receives the whole state, and every track
/// reaches every member, so both are bounded.
public struct PresenceLimits: Sendable {
    /// Tracks and untracks per second on one topic (bursts of twice as many).
    public var eventsPerSecond = 50.0
    /// Metas tracked at once on one topic.
    public var maxMetas = 1000
    /// Their encoded size in all.
    public var maxBytes = 256 * 1024
    public init() {}
}

/// The presence of one topic and privacy: public and private channels of one name never share presence.
struct PresenceScope: Hashable, Sendable {
    var topic: String
    var isPrivate: Bool
}

/// What the channels of one ``PresenceScope`` track: under each key, one meta per connection (Phoenix keeps a list of
/// metas per key, so a second client tracking the same key joins the first instead of replacing it).
struct PresenceTopic: Sendable {
    private var byKey: [String: [Int: (meta: JSONObject, bytes: Int)]] = [:]
    private var keyOfConnection: [Int: String] = [:]
    /// The metas tracked, and their encoded size in all (what every `presence_state` of the topic carries).
    private(set) var count = 0
    private(set) var bytes = 0
    /// Presence events of this topic per second (tracks and untracks).
    var bucket: TokenBucket?

    var isEmpty: Bool { keyOfConnection.isEmpty }

    mutating func track(key: String, connection: Int, meta: JSONObject, bytes size: Int) {
        byKey[key, default: [:]][connection] = (meta, size)
        keyOfConnection[connection] = key
        count += 1
        bytes += size
    }

    /// Removes the connection's meta; returns it with its key.
    mutating func remove(connection: Int) -> (key: String, meta: JSONObject)? {
        guard let key = keyOfConnection.removeValue(forKey: connection), let entry = byKey[key]?.removeValue(forKey: connection) else { return nil }
        if byKey[key]?.isEmpty == true { byKey[key] = nil }
        count -= 1
        bytes -= entry.bytes
        return (key, entry.meta)
    }

    /// The encoded size of the connection's meta, if it tracks one.
    func size(of connection: Int) -> Int? {
        guard let key = keyOfConnection[connection] else { return nil }
        return byKey[key]?[connection]?.bytes
    }

    /// Every key with its metas, keys sorted and metas in the order they were tracked (by connection number).
    func metasByKey() -> [(key: String, metas: [JSONObject])] {
        byKey.sorted { $0.key < $1.key }.map { key, metas in (key, metas.sorted { $0.key < $1.key }.map(\.value.meta)) }
    }
}
