import NIOCore

/// Latest-wins coalescing of a stream of row versions, per row (a pure state machine: the caller passes the time).
///
/// The first version of a row is sent at once and opens a window of `interval`. Versions of the row that arrive
/// during the window replace each other; when the window ends, the newest is sent (``due(now:)``) and opens the next
/// window. A row with nothing pending when its window ends is forgotten, so an idle row's next version goes out at
/// once again. A receiver therefore gets at most one version of a row per `interval`, never an older one after a
/// newer one, and always the last one.
public struct Coalescer<Instant: InstantProtocol, Item>: Sendable where Instant.Duration == Duration, Instant: Sendable, Item: Sendable {
    public let interval: Duration
    struct Slot: Sendable {
        var windowEnds: Instant
        var pending: Item?
    }
    private var slots: [String: Slot] = [:]

    public init(interval: Duration) { self.interval = interval }

    public enum Decision: Sendable, Equatable {
        /// Send this version now.
        case sendNow
        /// Held: it replaces the row's pending version and goes out when the window ends, unless a newer one replaces it.
        case held
    }

    /// Decides about a new version of the row `key`.
    public mutating func offer(_ item: Item, key: String, now: Instant) -> Decision {
        if var slot = slots[key], now < slot.windowEnds {
            slot.pending = item
            slots[key] = slot
            return .held
        }
        // no window open (or one that ended before its pending version was taken: this newer one supersedes it)
        slots[key] = Slot(windowEnds: now.advanced(by: interval), pending: nil)
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
                slots[key] = Slot(windowEnds: now.advanced(by: interval), pending: nil)
            } else {
                slots[key] = nil
            }
        }
        return items
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
