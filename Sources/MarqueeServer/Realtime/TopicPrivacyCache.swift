import Foundation
import Synchronization

/// Remembers for a while whether topic names are private (`realtime.is_private_topic`), so that thousands of public
/// joins of the same topic in an on-sale ask the database once. Bounded: past `capacity` names it starts afresh.
final class TopicPrivacyCache: Sendable {
    let lifetime: TimeInterval
    let capacity: Int
    private let entries = Mutex([String: (isPrivate: Bool, until: TimeInterval)]())

    init(lifetime: TimeInterval = 10, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// The answer for `topic` if it is fresh (or, with `acceptingStale`, whatever it was last).
    func isPrivate(_ topic: String, acceptingStale: Bool = false, now: TimeInterval = ProcessInfo.processInfo.systemUptime) -> Bool? {
        entries.withLock { entries in
            guard let entry = entries[topic], acceptingStale || entry.until > now else { return nil }
            return entry.isPrivate
        }
    }

    func remember(_ topic: String, isPrivate: Bool, now: TimeInterval = ProcessInfo.processInfo.systemUptime) {
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[topic] = (isPrivate, now + lifetime)
        }
    }
}
