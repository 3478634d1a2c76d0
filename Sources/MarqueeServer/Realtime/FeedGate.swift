import MarqueeCore
import Synchronization

/// Keeps `Subscribed to PostgreSQL` honest: it is sent only while the change feed streams. A channel that joins while
/// the feed (re)connects is told so (a `system` message with status `error` and a reason a person can act on), and
/// gets `Subscribed to PostgreSQL` once the feed is back. Its bindings are indexed at once either way, and the feed
/// resumes from its slot, so nothing committed in between is lost: it comes when the feed is back.
public final class FeedGate: Sendable {
    public static let subscribed = "Subscribed to PostgreSQL"
    public static let waiting =
        "Waiting for the PostgreSQL change feed, which is reconnecting; this subscription goes live (Subscribed to PostgreSQL) once it is back"

    struct Waiter: Sendable {
        var connection: ConnectionHandle
        var joinRef: String?
    }

    struct State: Sendable {
        var live = true
        var waiting: [RealtimeHub.ChannelKey: Waiter] = [:]
        /// Tasks waiting for the feed to stream (``waitUntilLive()``).
        var liveWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    /// Live until a change feed says otherwise (a hub without a feed, as in tests, delivers what it is given).
    public init() {}

    public var isLive: Bool { state.withLock { $0.live } }

    /// Whether `message` is the `Subscribed to PostgreSQL` notice of a join.
    static func isSubscribedNotice(_ message: PhoenixMessage) -> Bool {
        message.event == "system" && message.payload["extension"] == "postgres_changes" && message.payload["status"] == "ok"
            && message.payload["message"]?.stringValue == subscribed
    }

    /// The message to send in place of `message`: itself, unless it is a join's `Subscribed to PostgreSQL` while the
    /// feed is not streaming; then the channel waits for the feed and the join is told why.
    func admit(_ message: PhoenixMessage, connection: ConnectionHandle) -> PhoenixMessage {
        guard Self.isSubscribedNotice(message) else { return message }
        let live = state.withLock { state in
            if state.live { return true }
            state.waiting[RealtimeHub.ChannelKey(connection: connection.id, topic: message.topic)] = Waiter(
                connection: connection, joinRef: message.joinRef)
            return false
        }
        if live { return message }
        var notice = message
        notice.payload = Self.payload(topic: message.topic, status: "error", message: Self.waiting)
        return notice
    }

    /// The feed streams (true) or lost its stream (false). Returns the channels that waited for it.
    func setLive(_ live: Bool) -> [(key: RealtimeHub.ChannelKey, waiter: Waiter)] {
        let (channels, tasks) = state.withLock { state -> ([(key: RealtimeHub.ChannelKey, waiter: Waiter)], [CheckedContinuation<Void, Never>]) in
            state.live = live
            guard live else { return ([], []) }
            defer {
                state.waiting = [:]
                state.liveWaiters = [:]
            }
            return (state.waiting.map { ($0.key, $0.value) }, Array(state.liveWaiters.values))
        }
        for task in tasks { task.resume() }
        return channels
    }

    /// Returns once the feed streams (at once if it does), or when the task is cancelled.
    public func waitUntilLive() async {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.live || Task.isCancelled { return true }
                    state.liveWaiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.liveWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    static func payload(topic: String, status: String, message: String) -> JSONValue {
        .object([
            "extension": "postgres_changes", "status": .string(status), "message": .string(message),
            "channel": .string(String(topic.dropFirst("realtime:".count))),
        ])
    }
}

extension RealtimeHub {
    /// The change feed streams again (or for the first time): channels that joined while it was away go live.
    public func feedStreaming() {
        let waiters = feedGate.setLive(true)
        for (key, waiter) in waiters {
            // only channels still joined, by the same join
            let joined = state.withLock { $0.members[key.topic]?[key.connection].map { $0.joinRef == waiter.joinRef } ?? false }
            guard joined else { continue }
            let message = PhoenixMessage(
                joinRef: waiter.joinRef, topic: key.topic, event: "system",
                payload: FeedGate.payload(topic: key.topic, status: "ok", message: FeedGate.subscribed))
            waiter.connection.outbox.enqueue(.text(waiter.connection.serializer.encode(message)))
        }
    }

    /// The change feed lost its stream and reconnects: joins from now on wait for it.
    public func feedInterrupted() {
        _ = feedGate.setLive(false)
    }

    /// Changes may have been missed (the feed's slot was dropped and created again): every socket is closed with 1013
    /// "reconnect and resync", as for a slow consumer, so clients join again and load their snapshots.
    public func resyncEveryone(reason: String) -> Int {
        let connections = state.withLock { Array($0.connections.values) }
        for connection in connections { connection.outbox.enqueue(.close(code: 1013, reason: reason)) }
        return connections.count
    }
}
