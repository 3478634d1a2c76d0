import PostgresNIO

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
