import Synchronization

/// An in-memory ``RealtimeTransport`` for tests and previews: every connection attempt becomes an
/// ``InMemoryConnection`` that plays the server's side (read what the client sent, push frames, close, stall).
public final class InMemoryTransport: RealtimeTransport {
    /// What the next connection attempts do.
    public enum Mode: Sendable, Equatable {
        case accept
        /// Fail at once, as when the host is unreachable.
        case refuse
        /// Never complete the handshake (until the attempt is cancelled).
        case hang
    }

    public struct Refused: Error, CustomStringConvertible {
        public var description: String { "connection refused (in-memory transport)" }
    }

    private struct State {
        var mode: Mode = .accept
        var attempts = 0
        var connections: [InMemoryConnection] = []
        var closingHangs = false
        var closing: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let accepted = AsyncFrameQueue<InMemoryConnection>()

    public init() {}

    public var mode: Mode {
        get { state.withLock { $0.mode } }
        set { state.withLock { $0.mode = newValue } }
    }

    /// While true, a connection whose session ended does not finish closing, and ignores cancellation, until
    /// ``finishClosing()`` (as a dead peer that never answers the close handshake).
    public var closingHangs: Bool {
        get { state.withLock { $0.closingHangs } }
        set { state.withLock { $0.closingHangs = newValue } }
    }

    /// Lets every connection held by ``closingHangs`` finish closing.
    public func finishClosing() {
        let waiting = state.withLock { state in
            defer { state.closing = [] }
            return state.closing
        }
        for waiter in waiting { waiter.resume() }
    }

    /// How many times a connection was attempted.
    public var attempts: Int { state.withLock { $0.attempts } }

    /// Every accepted connection so far, oldest first.
    public var connections: [InMemoryConnection] { state.withLock { $0.connections } }

    /// Waits for the next accepted connection (in order of acceptance).
    public func nextConnection() async throws -> InMemoryConnection {
        guard let connection = try await accepted.next() else { throw CancellationError() }
        return connection
    }

    public func run(url: String, session: @escaping @Sendable (RealtimeLink) async throws -> Void) async throws {
        let mode = state.withLock { state in
            state.attempts += 1
            return state.mode
        }
        switch mode {
        case .refuse:
            throw Refused()
        case .hang:
            // a queue nobody pushes to: waits until the attempt is cancelled
            _ = try await AsyncFrameQueue<Int>().next()
            throw CancellationError()
        case .accept:
            let connection = InMemoryConnection(url: url)
            state.withLock { $0.connections.append(connection) }
            accepted.push(connection)
            defer { connection.close() }
            let result: Result<Void, any Error>
            do {
                try await session(RealtimeLink(send: { try connection.receiveFromClient($0) }, frames: connection.toClient))
                result = .success(())
            } catch {
                result = .failure(error)
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let hang = state.withLock { state in
                    if state.closingHangs { state.closing.append(continuation) }
                    return state.closingHangs
                }
                if !hang { continuation.resume() }
            }
            try result.get()
        }
    }

}

/// The server's side of one in-memory connection.
public final class InMemoryConnection: Sendable {
    public let url: String
    let toClient: AsyncThrowingStream<String, any Error>
    private let toClientContinuation: AsyncThrowingStream<String, any Error>.Continuation
    private let fromClient = AsyncFrameQueue<String>()
    private let closed = Mutex(false)

    public struct Closed: Error, CustomStringConvertible {
        public var description: String { "the in-memory connection is closed" }
    }

    init(url: String) {
        self.url = url
        (toClient, toClientContinuation) = AsyncThrowingStream.makeStream()
    }

    func receiveFromClient(_ text: String) throws {
        guard !closed.withLock({ $0 }) else { throw Closed() }
        fromClient.push(text)
    }

    /// Sends a text frame to the client.
    public func push(_ text: String) { toClientContinuation.yield(text) }

    /// The next frame the client sent (waiting for it); nil once closed and drained.
    public func nextFromClient() async throws -> String? { try await fromClient.next() }

    /// Frames the client sent and nobody has read yet.
    public var unreadFromClient: [String] { fromClient.pending }

    /// Ends the connection cleanly (as a server closing the socket).
    public func close() {
        closed.withLock { $0 = true }
        toClientContinuation.finish()
        fromClient.finish()
    }

    /// Ends the connection with an error (as a reset).
    public func fail(_ error: (any Error)? = nil) {
        closed.withLock { $0 = true }
        toClientContinuation.finish(throwing: error ?? Closed())
        fromClient.finish()
    }

    public var isClosed: Bool { closed.withLock { $0 } }
}

/// An unbounded FIFO with one consumer whose `next()` can be cancelled.
final class AsyncFrameQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer: [Element] = []
        var finished = false
        var waiter: (id: Int, continuation: CheckedContinuation<Element?, any Error>)?
        var nextID = 0
        var cancelled: Set<Int> = []
    }

    private let state = Mutex(State())

    func push(_ element: Element) {
        let waiter = state.withLock { state -> CheckedContinuation<Element?, any Error>? in
            guard !state.finished else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter.continuation
            }
            state.buffer.append(element)
            return nil
        }
        waiter?.resume(returning: element)
    }

    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Element?, any Error>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume(returning: nil)
    }

    var pending: [Element] { state.withLock { $0.buffer } }

    func next() async throws -> Element? {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
                let now: Result<Element?, any Error>? = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return .failure(CancellationError()) }
                    if !state.buffer.isEmpty { return .success(state.buffer.removeFirst()) }
                    if state.finished { return .success(nil) }
                    state.waiter = (id, continuation)
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Element?, any Error>? in
                if let waiter = state.waiter, waiter.id == id {
                    state.waiter = nil
                    return waiter.continuation
                }
                state.cancelled.insert(id)
                return nil
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
