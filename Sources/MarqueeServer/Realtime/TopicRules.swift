/// Marquee's own topic rules, the same as `realtime.is_own_topic` and `realtime.is_private_topic`
/// (db/migrations/0007_topic_policies.sql), applied even when the database cannot be asked.
///
/// - Marquee's own topics (`event:<id>:availability`, `event:<id>:queue`, `user:<id>:reservations`) carry only what the
///   database says: no client broadcast or presence is accepted on them.
/// - `user:<id>:…` topics are private: they cannot be joined publicly.
public enum TopicRules {
    /// Whether clients may never send on the topic `name` (without `realtime:`).
    public static func isOwn(_ name: String) -> Bool {
        let parts = name.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return false }
        if parts.first == "event" { return parts.last == "availability" || parts.last == "queue" }
        if parts.first == "user" { return parts.last == "reservations" }
        return false
    }

    /// Whether the topic `name` (without `realtime:`) may only be joined with `config.private = true`, whatever the
    /// database says.
    public static func isPrivateOnly(_ name: String) -> Bool { name.hasPrefix("user:") }

    /// The longest topic name a join may use, in bytes.
    public static let maxTopicBytes = 255
}
