import Foundation
import Synchronization

/// What a connection's writer sends next.
public enum OutboundFrame: Sendable, Equatable {
    case text(String)
    /// A committed change: the writer observes commit→send latency when it has written the text.
    case change(String, committed: Date)
    case close(code: UInt16, reason: String)

    /// The text of a text or change frame.
    public var text: String? {
        switch self {
        case .text(let text), .change(let text, _): return text
        case .close: return nil
        }
    }
}

/// A bounded queue of frames for one socket, filled by fan-out and emptied by the socket's writer task.
///
/// When a socket cannot keep up and the queue is full, the queue is dropped and replaced by a close frame that tells
/// the client to reconnect and resync, so one slow reader never grows memory or slows the others.
public final class Outbox: Sendable {
    struct State {
        var frames: [OutboundFrame] = []
        var head = 0
        var waiter: CheckedContinuation<OutboundFrame?, Never>?
        var finished = false
        var overflowed = false
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int) { self.capacity = capacity }

    /// What became of a frame.
    public enum EnqueueResult: Sendable, Equatable {
        case queued
        /// This frame found the queue full: the queue was dropped and the socket is being closed.
        case overflowedNow
        /// The queue had overflowed or finished before.
        case rejected
    }

    /// Queues a frame; returns true when it was queued.
    @discardableResult
    public func enqueue(_ frame: OutboundFrame) -> Bool {
        offer(frame) == .queued
    }

    /// Queues a frame and says what became of it.
    public func offer(_ frame: OutboundFrame) -> EnqueueResult {
        let (waiter, result): (CheckedContinuation<OutboundFrame?, Never>?, EnqueueResult) = state.withLock { state in
            if state.finished || state.overflowed { return (nil, .rejected) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (waiter, .queued)
            }
            if state.frames.count - state.head >= capacity {
                state.overflowed = true
                state.frames = [.close(code: 1013, reason: "slow consumer: too many messages queued; reconnect and resync")]
                state.head = 0
                return (nil, .overflowedNow)
            }
            state.frames.append(frame)
            return (nil, .queued)
        }
        waiter?.resume(returning: frame)
        return result
    }

    /// Whether this queue overflowed.
    public var overflowed: Bool { state.withLock { $0.overflowed } }

    /// Frames waiting to be written.
    public var depth: Int { state.withLock { $0.frames.count - $0.head } }

    /// Ends the queue: the writer gets the frames already queued, then nil.
    public func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<OutboundFrame?, Never>? in
            state.finished = true
            let waiter = state.waiter
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next frame, waiting for one; nil once finished and drained.
    public func next() async -> OutboundFrame? {
        await withCheckedContinuation { (continuation: CheckedContinuation<OutboundFrame?, Never>) in
            let immediate: OutboundFrame?? = state.withLock { state in
                if state.head < state.frames.count {
                    let frame = state.frames[state.head]
                    state.head += 1
                    if state.head == state.frames.count {
                        state.frames.removeAll(keepingCapacity: true)
                        state.head = 0
                    }
                    return .some(frame)
                }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return .none
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }
}
