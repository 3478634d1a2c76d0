import NIOCore

/// Latest-wins coalescing of a stream of row versions, per row (a pure state machine: the caller passes the time).
///
/// The first version of a row is sent at once and opens a window of `interval`. Versions of the row that arrive
/// during the window replace each other; when the window ends, the newest is sent (``due(now:)``) and opens the next
/// window. A row with nothing pending when its window ends is forgotten, so an idle row's next version goes out at
/// once again. A receiver therefore gets at most one version of a row per `interval` on average, never an older one
/// after a newer one, and always the last one.
///
/// Windows keep to their schedule: the window after one that was closed late (a busy timer) ends `interval` after
/// the late one was due to end, not `interval` after it was closed, so lateness is not carried into every later
/// window (a row changing all the time still gets a version every `interval`); only when that instant has passed
/// already does the next window end `interval` from now.
///
/// A version that arrives at most `tolerance` before its window ends goes at once instead of waiting for the end,
/// and counts as that window's send (the next window still ends `interval` after this one). A row that changes about
/// once per `interval` is therefore never held back by the jitter of the change feed, while a row that changes all
/// the time still gets one version per `interval` (one more in the second it starts, at most).
public struct Coalescer<Instant: InstantProtocol, Item>: Sendable where Instant.Duration == Duration, Instant: Sendable, Item: Sendable {
    public let interval: Duration
    /// How long before the end of its window a new version may go at once (half the interval unless told).
    public let tolerance: Duration
    struct Slot: Sendable {
        var windowEnds: Instant
        var pending: Item?
    }
    private var slots: [String: Slot] = [:]

    public init(interval: Duration, tolerance: Duration? = nil) {
        self.interval = interval
        self.tolerance = min(max(tolerance ?? interval / 2, .zero), interval)
    }

    public enum Decision: Sendable, Equatable {
        /// Send this version now.
        case sendNow
        /// Held: it replaces the row's pending version and goes out when the window ends, unless a newer one replaces it.
        case held
    }

    /// Decides about a new version of the row `key`.
    public mutating func offer(_ item: Item, key: String, now: Instant) -> Decision {
        if var slot = slots[key], now < slot.windowEnds.advanced(by: .zero - tolerance) {
            slot.pending = item
            slots[key] = slot
            return .held
        }
        // no window open, or one that ends within the tolerance or has ended before its pending version was taken:
        // this newer one goes now and supersedes the pending one
        let windowEnds = slots[key].map { nextWindowEnd(after: $0.windowEnds, now: now) } ?? now.advanced(by: interval)
        slots[key] = Slot(windowEnds: windowEnds, pending: nil)
        return .sendNow
    }

    /// The pending versions whose window has ended by `now`, in the order their windows ended; each opens a new window.
    public mutating func due(now: Instant) -> [Item] {
        var ended: [(key: String, slot: Slot)] = []
        for (key, slot) in slots where slot.windowEnds <= now { ended.append((key, slot)) }
        ended.sort { $0.slot.windowEnds < $1.slot.windowEnds || ($0.slot.windowEnds == $1.slot.windowEnds && $0.key < $1.key) }
        var items: [Item] = []
        for (key, slot) in ended {
            if let pending = slot.pending {
                items.append(pending)
                slots[key] = Slot(windowEnds: nextWindowEnd(after: slot.windowEnds, now: now), pending: nil)
            } else {
                slots[key] = nil
            }
        }
        return items
    }

    /// The end of the window after one that ended at `end`, a window sent at `now`: on schedule, unless that has passed.
    private func nextWindowEnd(after end: Instant, now: Instant) -> Instant {
        let scheduled = end.advanced(by: interval)
        return scheduled > now ? scheduled : now.advanced(by: interval)
    }

    /// When ``due(now:)`` next has something to do (a window ends); nil when no row is in a window.
    public var nextDeadline: Instant? { slots.values.lazy.map(\.windowEnds).min() }

    /// Rows in a window.
    public var count: Int { slots.count }

    /// Rows with a version waiting for their window to end.
    public var pendingCount: Int { slots.values.count { $0.pending != nil } }
}

/// The clock and timer of coalescing windows.
public protocol CoalescingTimer: Sendable {
    func now() -> ContinuousClock.Instant
    /// Runs `work` once, at `deadline` or soon after.
    func schedule(at deadline: ContinuousClock.Instant, _ work: @escaping @Sendable () -> Void)
}

/// Windows end on an event loop's timer.
public struct EventLoopCoalescingTimer: CoalescingTimer {
    let eventLoop: any EventLoop

    public init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func now() -> ContinuousClock.Instant { .now }

    public func schedule(at deadline: ContinuousClock.Instant, _ work: @escaping @Sendable () -> Void) {
        let delay = ContinuousClock.now.duration(to: deadline).components
        let nanoseconds = max(0, delay.seconds * 1_000_000_000 + delay.attoseconds / 1_000_000_000)
        eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { work() }
    }
}
