import PostgresNIO
import Synchronization

/// How long the server waits for the database on behalf of a request, a join or a background pass.
///
/// Every database call of the server goes through ``run(_:_:)``: past ``limit`` the caller gets ``DatabaseTimeout``
/// (HTTP 503 `database_timeout`, a `phx_reply` error for a join) and the query is abandoned. A query can otherwise hang
/// for good: PostgresNIO drops a statement written to a pool connection that the database closed a moment before (a
/// restart, a failover) and never completes it, whatever the cancellation. The pool's sessions also carry
/// `statement_timeout` (``statementTimeout``), so that a statement that is merely slow is ended by PostgreSQL itself
/// and its connection goes back to the pool.
public struct DatabaseDeadline: Sendable {
    public var limit: Duration

    public init(_ limit: Duration = .seconds(5)) {
        self.limit = limit
    }

    /// PostgreSQL's `statement_timeout` for the pool's sessions: a little below the limit, so that a slow statement is
    /// cancelled by the database (a clean error, the connection reusable) before the caller gives it up.
    public var statementTimeout: Duration { max(limit * 0.8, .milliseconds(10)) }

    /// Runs `operation`, giving it up after ``limit`` with ``DatabaseTimeout``.
    public func run<T: Sendable>(_ what: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        do {
            return try await withDeadline(limit, what, operation)
        } catch is DeadlineExceeded {
            throw DatabaseTimeout(what: what, limit: limit)
        }
    }

    /// Runs `operation` on the connection `watch` watches, giving it up after ``limit`` with ``DatabaseTimeout``, and at
    /// once with ``DatabaseConnectionClosed`` when the connection closes first (a statement the closed connection never
    /// sent is never answered).
    public func run<T: Sendable>(_ what: String, on watch: ConnectionWatch, _ operation: @escaping @Sendable () async throws -> T)
        async throws -> T
    {
        let armed = Mutex<Int?>(nil)
        defer { armed.withLock { $0 }.map(watch.disarm) }
        do {
            return try await withDeadline(
                limit, what,
                giveUp: { abandon in
                    let id = watch.arm { abandon(DatabaseConnectionClosed(what: what)) }
                    armed.withLock { $0 = id }
                },
                operation)
        } catch is DeadlineExceeded {
            throw DatabaseTimeout(what: what, limit: limit)
        }
    }

    /// `options` with this deadline's `statement_timeout` added to the startup parameters of every connection.
    public func apply(to options: inout PostgresClient.Configuration.Options) {
        let milliseconds = statementTimeout.components.seconds * 1000 + statementTimeout.components.attoseconds / 1_000_000_000_000_000
        options.additionalStartupParameters.removeAll { $0.0 == "statement_timeout" }
        options.additionalStartupParameters.append(("statement_timeout", "\(milliseconds)"))
    }
}

/// The database did not answer within the server's deadline.
public struct DatabaseTimeout: Error, CustomStringConvertible, Sendable {
    public var what: String
    public var limit: Duration
    public var description: String { "the database did not answer within \(limit) (\(what))" }
}

/// The connection a statement was sent on closed before the statement was answered.
public struct DatabaseConnectionClosed: Error, CustomStringConvertible, Sendable {
    public var what: String
    public var description: String { "the database connection closed (\(what))" }
}

/// Watches one connection for its close, and then gives up the statement in flight on it, if any. One watch per
/// connection: a close callback per statement would pile up for as long as the connection lives.
public final class ConnectionWatch: Sendable {
    private struct State {
        var closed = false
        var nextID = 0
        var armed: (id: Int, giveUp: @Sendable () -> Void)?
    }
    private let state = Mutex(State())

    public init(_ connection: PostgresConnection) {
        connection.closeFuture.whenComplete { _ in self.closed() }
    }

    private func closed() {
        let giveUp = state.withLock { state in
            state.closed = true
            defer { state.armed = nil }
            return state.armed?.giveUp
        }
        giveUp?()
    }

    /// `giveUp` is called when the connection closes (at once if it has); returns the id to disarm it with.
    func arm(_ giveUp: @escaping @Sendable () -> Void) -> Int {
        let (id, closed) = state.withLock { state in
            state.nextID += 1
            if !state.closed { state.armed = (state.nextID, giveUp) }
            return (state.nextID, state.closed)
        }
        if closed { giveUp() }
        return id
    }

    /// Forgets the `giveUp` armed as `id` (the statement ended).
    func disarm(_ id: Int) {
        state.withLock { state in
            if state.armed?.id == id { state.armed = nil }
        }
    }
}

/// A connection with the watch that gives up its statement in flight when it closes.
public struct WatchedConnection: Sendable {
    public let connection: PostgresConnection
    public let watch: ConnectionWatch

    public init(_ connection: PostgresConnection) {
        self.connection = connection
        self.watch = ConnectionWatch(connection)
    }
}
