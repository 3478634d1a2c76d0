import MarqueeCore

/// The presence of one topic and privacy: public and private channels of one name never share presence.
struct PresenceScope: Hashable, Sendable {
    var topic: String
    var isPrivate: Bool
}

/// What the channels of one ``PresenceScope`` track: under each key, one meta per connection (Phoenix keeps a list of
/// metas per key, so a second client tracking the same key joins the first instead of replacing it).
struct PresenceTopic: Sendable {
    private var byKey: [String: [Int: JSONObject]] = [:]
    private var keyOfConnection: [Int: String] = [:]

    var isEmpty: Bool { keyOfConnection.isEmpty }

    mutating func track(key: String, connection: Int, meta: JSONObject) {
        byKey[key, default: [:]][connection] = meta
        keyOfConnection[connection] = key
    }

    /// Removes the connection's meta; returns it with its key.
    mutating func remove(connection: Int) -> (key: String, meta: JSONObject)? {
        guard let key = keyOfConnection.removeValue(forKey: connection), let meta = byKey[key]?.removeValue(forKey: connection) else { return nil }
        if byKey[key]?.isEmpty == true { byKey[key] = nil }
        return (key, meta)
    }

    /// Every key with its metas, keys sorted and metas in the order they were tracked (by connection number).
    func metasByKey() -> [(key: String, metas: [JSONObject])] {
        byKey.sorted { $0.key < $1.key }.map { key, metas in (key, metas.sorted { $0.key < $1.key }.map(\.value)) }
    }
}
