/// What a viewer may do on a topic, decided at the edge before the session takes a join or a token refresh: from
/// `realtime.can_join` / `realtime.can_send` for a private topic, from `realtime.is_private_topic` and
/// ``TopicRules`` for a public one.
public struct TopicRights: Sendable, Equatable {
    public var mayJoin: Bool
    public var mayBroadcast: Bool
    public var mayTrackPresence: Bool

    public init(mayJoin: Bool, mayBroadcast: Bool, mayTrackPresence: Bool) {
        self.mayJoin = mayJoin
        self.mayBroadcast = mayBroadcast
        self.mayTrackPresence = mayTrackPresence
    }

    public static let none = TopicRights(mayJoin: false, mayBroadcast: false, mayTrackPresence: false)

    /// The rights on a public topic when nothing else is known: anyone may join it unless it is private by
    /// ``TopicRules``, and send on it unless it is one of Marquee's own.
    public static func publicTopic(_ name: String) -> TopicRights {
        let own = TopicRules.isOwn(name)
        return TopicRights(mayJoin: !TopicRules.isPrivateOnly(name), mayBroadcast: !own, mayTrackPresence: !own)
    }
}
