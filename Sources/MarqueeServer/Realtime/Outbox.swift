import Foundation
import NIOCore
import Synchronization

/// What a socket is sent next.
public enum OutboundFrame: Sendable, Equatable {
    /// A text frame.
    case message(WireFrame)
    /// A committed change: commit→send latency is observed when the frame is written.
    case change(WireFrame, committed: Date)
    case close(code: UInt16, reason: String)

    /// A text frame of this text.
    public static func text(_ text: String) -> OutboundFrame { .message(WireFrame(text: text)) }

    /// The text of a text or change frame.
    public var text: String? { wire?.text }

    /// The frame of a text or change frame.
    public var wire: WireFrame? {
        switch self {
        case .message(let frame), .change(let frame, _): return frame
        case .close: return nil
        }
    }
}

/// A bounded queue of frames for one socket, filled by fan-out and the socket's session.
///
/// With a ``SocketSink`` (every real socket) the queue is emptied from the socket's event loop: the sink's
/// ``LoopWriter`` writes the queued frames of all its sockets that have any, then flushes each once, and stops
/// taking frames from a socket whose channel is not writable until it is again. Without a sink, ``next()`` hands the
/// frames out one by one (tests, tools).
///
/// When a socket cannot keep up and the queue is full, the queue is dropped and a close frame (1013, "reconnect and
/// resync") is handed to ``next()``, so one slow reader never grows memory or slows the others.
public final class Outbox: Sendable {
    struct State {
        var frames: [OutboundFrame] = []
        var head = 0
        /// Bytes of the frames waiting (payload and header).
        var bytes = 0
        var waiter: CheckedContinuation<OutboundFrame?, Never>?
        /// With a sink: the close frame that ends the socket (what ``next()`` hands out).
        var control: OutboundFrame?
        var finished = false
        var overflowed = false
        /// With a sink: the outbox is in its loop writer's list.
        var scheduled = false
        /// With a sink: the channel was not writable; frames wait until it is.
        var blocked = false

        /// Gives a close frame to the waiting reader, or keeps it for the next read.
        mutating func handOver(_ close: OutboundFrame) -> Next {
            if let waiter {
                self.waiter = nil
                return .close(waiter, close)
            }
            control = close
            return .close(nil, close)
        }
    }

    enum Next {
        case none
        case schedule
        case close(CheckedContinuation<OutboundFrame?, Never>?, OutboundFrame)
    }

    /// The most frames that may wait.
    public let capacity: Int
    /// The most bytes that may wait (frames of up to the frame limit would otherwise let a slow reader hold gigabytes).
    public let maxBytes: Int
    let sink: SocketSink?
    private let state = Mutex(State())

    public init(capacity: Int, maxBytes: Int = Int.max) {
        self.capacity = capacity
        self.maxBytes = maxBytes
        self.sink = nil
    }

    init(capacity: Int, maxBytes: Int = Int.max, sink: SocketSink) {
        self.capacity = capacity
        self.maxBytes = maxBytes
        self.sink = sink
    }

    /// Whether one more frame of `size` bytes fits beside what waits.
    private func fits(_ size: Int, in state: State) -> Bool {
        state.frames.count - state.head < capacity && (state.bytes == 0 || state.bytes + size <= maxBytes)
    }

    static func size(of frame: OutboundFrame) -> Int { frame.wire?.bytes.readableBytes ?? 0 }

    static let overflowClose = OutboundFrame.close(code: 1013, reason: "slow consumer: too many messages queued; reconnect and resync")

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
        if let sink { return offerToSink(frame, sink) }
        let (waiter, result): (CheckedContinuation<OutboundFrame?, Never>?, EnqueueResult) = state.withLock { state in
            if state.finished || state.overflowed { return (nil, .rejected) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (waiter, .queued)
            }
            let size = Self.size(of: frame)
            if !fits(size, in: state) {
                state.overflowed = true
                state.frames = [Self.overflowClose]
                state.head = 0
                state.bytes = 0
                return (nil, .overflowedNow)
            }
            state.frames.append(frame)
            state.bytes += size
            return (nil, .queued)
        }
        waiter?.resume(returning: frame)
        return result
    }

    private func offerToSink(_ frame: OutboundFrame, _ sink: SocketSink) -> EnqueueResult {
        let (next, result): (Next, EnqueueResult) = state.withLock { state in
            if state.finished || state.overflowed { return (.none, .rejected) }
            if case .close = frame {
                return (state.handOver(frame), .queued)
            }
            let size = Self.size(of: frame)
            if !fits(size, in: state) {
                state.overflowed = true
                state.frames = []
                state.bytes = 0
                return (state.handOver(Self.overflowClose), .overflowedNow)
            }
            state.frames.append(frame)
            state.bytes += size
            if state.scheduled || state.blocked { return (.none, .queued) }
            state.scheduled = true
            return (.schedule, .queued)
        }
        switch next {
        case .none: break
        case .schedule: sink.loop.schedule(self)
        case .close(let waiter, let close):
            waiter?.resume(returning: close)
            if case .close(let code, let reason) = close { sink.requestClose(code: code, reason: reason) }
        }
        return result
    }

    /// Whether this queue overflowed.
    public var overflowed: Bool { state.withLock { $0.overflowed } }

    /// Frames waiting to be written.
    public var depth: Int { state.withLock { $0.frames.count - $0.head + ($0.control == nil ? 0 : 1) } }

    /// Ends the queue: without a sink, the reader gets the frames already queued, then nil; with one, queued frames are
    /// dropped (the socket is gone) and ``next()`` returns nil.
    public func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<OutboundFrame?, Never>? in
            state.finished = true
            if sink != nil {
                state.frames = []
                state.bytes = 0
                state.control = nil
            }
            let waiter = state.waiter
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next frame, waiting for one; nil once finished and drained. With a sink, only the close frame comes here.
    public func next() async -> OutboundFrame? {
        await withCheckedContinuation { (continuation: CheckedContinuation<OutboundFrame?, Never>) in
            let immediate: OutboundFrame?? = state.withLock { state in
                if let control = state.control {
                    state.control = nil
                    return .some(control)
                }
                if sink == nil, state.head < state.frames.count {
                    let frame = state.frames[state.head]
                    state.head += 1
                    state.bytes -= Self.size(of: frame)
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

    // MARK: Writing from the event loop (with a sink)

    /// Takes the queued frames unless the channel cannot take more (then the outbox waits for ``resume()``).
    func takeForWriting(channelWritable: Bool) -> [OutboundFrame] {
        state.withLock { state in
            state.scheduled = false
            guard channelWritable else {
                state.blocked = !state.frames.isEmpty
                return []
            }
            let frames = state.frames
            state.frames = []
            state.bytes = 0
            return frames
        }
    }

    /// The channel is writable again: queued frames are written on the loop's next pass.
    func resume() {
        guard let sink else { return }
        let schedule = state.withLock { state -> Bool in
            state.blocked = false
            guard !state.frames.isEmpty, !state.scheduled, !state.finished else { return false }
            state.scheduled = true
            return true
        }
        if schedule { sink.loop.schedule(self) }
    }
}

/// Where an outbox's frames go: a channel's ``FrameWriteHandler`` on its event loop, batched by that loop's writer.
final class SocketSink: Sendable {
    let loop: LoopWriter
    /// Set on the loop once the handler is in the pipeline; cleared when it leaves.
    let handler: NIOLoopBoundBox<FrameWriteHandler?>

    /// Set on the loop by the socket's handler: closes the socket with a close frame of this code and reason.
    let onClose: NIOLoopBoundBox<((UInt16, String) -> Void)?>

    init(loop: LoopWriter) {
        self.loop = loop
        self.handler = .makeEmptyBox(valueType: FrameWriteHandler.self, eventLoop: loop.eventLoop)
        self.onClose = .makeEmptyBox(valueType: ((UInt16, String) -> Void).self, eventLoop: loop.eventLoop)
    }

    /// Asks the socket's handler, on its loop, to close the socket.
    func requestClose(code: UInt16, reason: String) {
        let onClose = self.onClose
        loop.eventLoop.execute { onClose.value?(code, reason) }
    }
}

/// Writes the queued frames of many sockets of one event loop in one pass: every socket's frames, then one flush per
/// socket, instead of a hop and a system call per frame. Outboxes that receive frames while a pass is pending join it.
final class LoopWriter: Sendable {
    let eventLoop: any EventLoop
    let metrics: HubMetrics
    private let pending = Mutex<(outboxes: [Outbox], scheduled: Bool)>(([], false))

    init(eventLoop: any EventLoop, metrics: HubMetrics) {
        self.eventLoop = eventLoop
        self.metrics = metrics
    }

    func schedule(_ outbox: Outbox) {
        let startPass = pending.withLock { pending -> Bool in
            pending.outboxes.append(outbox)
            if pending.scheduled { return false }
            pending.scheduled = true
            return true
        }
        if startPass { eventLoop.execute { self.pass() } }
    }

    /// One pass, on the loop: writes, then flushes. Returns the number of sockets flushed (for tests).
    @discardableResult
    func pass(now: Date = Date()) -> Int {
        let outboxes = pending.withLock { pending -> [Outbox] in
            pending.scheduled = false
            let outboxes = pending.outboxes
            pending.outboxes = []
            pending.outboxes.reserveCapacity(outboxes.count)
            return outboxes
        }
        var written: [FrameWriteHandler] = []
        written.reserveCapacity(outboxes.count)
        for outbox in outboxes {
            guard let handler = outbox.sink?.handler.value else {
                _ = outbox.takeForWriting(channelWritable: false)
                continue
            }
            let frames = outbox.takeForWriting(channelWritable: handler.isWritable)
            guard !frames.isEmpty else { continue }
            for frame in frames {
                switch frame {
                case .message(let wire): handler.write(wire.bytes)
                case .change(let wire, let committed):
                    handler.write(wire.bytes)
                    metrics.recordSent(committed: committed, now: now)
                case .close: break  // handed to next(), never queued here
                }
            }
            written.append(handler)
        }
        for handler in written { handler.flush() }
        return written.count
    }
}

/// Sits next to the socket in an upgraded WebSocket channel's pipeline and writes pre-framed bytes there, past the
/// frame encoder; what other handlers write (pongs, the close handshake) passes through untouched.
final class FrameWriteHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private let outbox: Outbox
    /// The channel's writability as NIO last announced it (NIO fires the change from inside the write that crosses
    /// the high-water mark), so a pass does not ask the channel for every socket.
    private(set) var isWritable = false

    init(outbox: Outbox) { self.outbox = outbox }

    func write(_ bytes: ByteBuffer) { context?.write(wrapOutboundOut(bytes), promise: nil) }

    func flush() { context?.flush() }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isWritable = context.channel.isWritable
        outbox.sink?.handler.value = self
        outbox.resume()  // frames queued before the handler was in place
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        isWritable = false
        outbox.sink?.handler.value = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { outbox.resume() }
        context.fireChannelWritabilityChanged()
    }
}

/// One ``LoopWriter`` per event loop.
final class LoopWriters: Sendable {
    let metrics: HubMetrics
    private let writers = Mutex([ObjectIdentifier: LoopWriter]())

    init(metrics: HubMetrics) { self.metrics = metrics }

    func writer(for eventLoop: any EventLoop) -> LoopWriter {
        writers.withLock { writers in
            if let writer = writers[ObjectIdentifier(eventLoop)] { return writer }
            let writer = LoopWriter(eventLoop: eventLoop, metrics: metrics)
            writers[ObjectIdentifier(eventLoop)] = writer
            return writer
        }
    }
}
