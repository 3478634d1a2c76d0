import Synchronization

/// Thrown when an operation did not finish in time.
public struct DeadlineExceeded: Error, CustomStringConvertible, Sendable {
    /// What was being waited for ("reading the availability", "waiting for the server to stop").
    public var what: String
    public var limit: Duration

    public init(what: String, limit: Duration) {
        self.what = what
        self.limit = limit
    }

    public var description: String { "timed out after \(limit) \(what)" }
}

/// Runs `operation`, throwing `DeadlineExceeded` if it has not finished within `limit`, and `CancellationError` at once
/// when the calling task is cancelled.
///
/// The deadline abandons the operation: it is cancelled, but not waited for. An operation that ignores cancellation
/// (a PostgresNIO query sent on a connection the database already closed never completes) therefore cannot hold its
/// caller, and with it a request or a graceful shutdown, past the limit; it runs on, unobserved, until it ends by itself.
/// The timer only bounds the wait: the result comes as soon as the operation finishes.
@discardableResult
public func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String = "waiting for the operation", _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withDeadline(limit, what, giveUp: { _ in }, operation)
}

/// ``withDeadline(_:_:_:)`` that can also be given up early: `giveUp` receives a function that abandons the operation
/// with an error (at once, if it is called before the operation finishes), to be called when something shows that the
/// operation cannot finish any more (its connection closed).
func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String, giveUp: (@escaping @Sendable (any Error) -> Void) -> Void,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    giveUp { race.finish(.failure($0)) }
    let work = Task {
        do {
            race.finish(.success(try await operation()))
        } catch {
            race.finish(.failure(error))
        }
    }
    let timer = Task {
        do { try await Task.sleep(for: limit) } catch { return }
        race.finish(.failure(DeadlineExceeded(what: what, limit: limit)))
    }
    defer {
        work.cancel()
        timer.cancel()
    }
    return try await withTaskCancellationHandler {
        try await race.outcome()
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The first outcome of an operation, its deadline or a cancellation, handed to the one caller waiting for it.
private final class DeadlineRace<T: Sendable>: Sendable {
    private enum State {
        case pending
        case waiting(CheckedContinuation<T, any Error>)
        case done(Result<T, any Error>)
        case delivered
    }
    private let state = Mutex(State.pending)

    /// Records `result` if nothing came first, and wakes the caller.
    func finish(_ result: Result<T, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<T, any Error>? in
            switch state {
            case .pending:
                state = .done(result)
                return nil
            case .waiting(let continuation):
                state = .delivered
                return continuation
            case .done, .delivered:
                return nil
            }
        }
        waiter?.resume(with: result)
    }

    /// The first outcome, waiting for it.
    func outcome() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<T, any Error>? in
                switch state {
                case .pending:
                    state = .waiting(continuation)
                    return nil
                case .done(let result):
                    state = .delivered
                    return result
                case .waiting, .delivered:
                    preconditionFailure("one caller waits for a deadline race")
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
