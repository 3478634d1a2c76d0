/// Capped exponential backoff with jitter: attempt n waits `min(cap, base·2^(n-1))`, shortened by up to `jitter` of
/// itself (`random` is uniform in 0..<1).
struct Backoff: Sendable, Equatable {
    var base: Duration
    var cap: Duration
    var jitter: Double

    func delay(attempt: Int, random: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let raw = base * (1 << exponent)
        let capped = raw > cap ? cap : raw
        let factor = 1 - min(max(jitter, 0), 1) * min(max(random, 0), 1)
        return capped * factor
    }
}

/// Heartbeats on topic `phoenix`: one outstanding at a time, each must be answered before the timeout.
struct HeartbeatMachine: Sendable {
    private(set) var pending: String?

    enum Deadline: Equatable { case answered, timedOut }

    /// A heartbeat with `ref` was sent.
    mutating func sent(ref: String) { pending = ref }

    /// A `phx_reply` on `phoenix` arrived; returns whether it answered the outstanding heartbeat.
    mutating func replied(ref: String?) -> Bool {
        guard let ref, ref == pending else { return false }
        pending = nil
        return true
    }

    /// The timeout after sending `ref` elapsed.
    func deadlinePassed(ref: String) -> Deadline { pending == ref ? .timedOut : .answered }

    mutating func reset() { pending = nil }
}

/// Latest-wins throttling of one event's updates: the first change after a quiet interval is delivered at once,
/// later ones within the interval are folded into a single delivery at its end.
struct Coalescer: Sendable, Equatable {
    private(set) var throttling = false
    private(set) var dirty = false

    enum Action: Equatable {
        case none
        /// Deliver the current picture now and start the interval timer.
        case deliverAndStartTimer
    }

    mutating func changed() -> Action {
        if throttling {
            dirty = true
            return .none
        }
        throttling = true
        return .deliverAndStartTimer
    }

    mutating func timerFired() -> Action {
        if dirty {
            dirty = false
            return .deliverAndStartTimer
        }
        throttling = false
        return .none
    }
}
