import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// A `postgres://user:password@host:port/database?sslmode=…` URL.
public struct DatabaseURL: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var requireTLS: Bool
    /// The URL's query parameters (`sslmode`, `sslrootcert`, …), handed to libpq as they are by the change feed.
    public var options: [(String, String)] = []

    public init(parsing text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
            ["postgres", "postgresql"].contains(scheme.lowercased())
        else {
            throw DatabaseURLError(message: "DATABASE_URL must look like postgres://user:password@host:5432/database")
        }
        guard let host = components.host, !host.isEmpty else {
            throw DatabaseURLError(message: "DATABASE_URL has no host")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user?.removingPercentEncoding ?? "postgres"
        self.password = components.password?.removingPercentEncoding
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? self.username : path
        let sslmode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "disable"
        self.requireTLS = ["require", "verify-ca", "verify-full"].contains(sslmode)
        self.options = (components.queryItems ?? []).compactMap { item in item.value.map { (item.name, $0) } }
    }

    /// The URL without its password, for logs.
    public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }

    /// The same server, another database.
    public func with(database: String) -> DatabaseURL {
        var copy = self
        copy.database = database
        return copy
    }

    var tlsContext: NIOSSLContext? {
        requireTLS ? try? NIOSSLContext(configuration: .makeClientConfiguration()) : nil
    }

    /// Settings every Marquee session starts with, whatever the server's defaults: values are printed the way the change
    /// feed's value converter reads them, and `to_jsonb` (snapshots, broadcasts) writes timestamps in UTC as Supabase's
    /// servers do. For libpq, `sessionOptions`.
    public static let sessionParameters: [(String, String)] = [
        ("TimeZone", "UTC"), ("DateStyle", "ISO, MDY"), ("IntervalStyle", "postgres"), ("bytea_output", "hex"), ("extra_float_digits", "1"),
    ]

    /// `sessionParameters` as a libpq `options` value (`-c name=value ...`), for a connection made with libpq.
    public static var sessionOptions: String {
        sessionParameters.map { "-c \($0.0)=\($0.1.replacingOccurrences(of: " ", with: "\\ "))" }.joined(separator: " ")
    }

    /// Configuration for a connection pool.
    public func clientConfiguration() -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: requireTLS ? .require(.makeClientConfiguration()) : .disable)
        configuration.options.additionalStartupParameters = Self.sessionParameters
        return configuration
    }

    /// Configuration for one connection.
    public func connectionConfiguration() -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: tlsContext.map { .require($0) } ?? .disable)
        configuration.options.additionalStartupParameters = Self.sessionParameters
        return configuration
    }

    private static let connectionIDs = ManagedAtomicCounter()

    /// Opens one connection, runs `body`, and closes it. With a `deadline`, opening the connection (TCP, TLS, startup
    /// and authentication) is bounded by it; `body` bounds its own queries. The connection lives on `eventLoop`, or on
    /// one of PostgresNIO's default loops (the server's) when nil.
    public func withConnection<T: Sendable>(
        logger: Logger, deadline: DatabaseDeadline? = nil, eventLoop: (any EventLoop)? = nil,
        _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let configuration = connectionConfiguration()
        let id = Self.connectionIDs.next()
        let loop = eventLoop ?? PostgresConnection.defaultEventLoopGroup.any()
        let connection: PostgresConnection
        if let deadline {
            connection = try await deadline.run("connecting") {
                try await PostgresConnection.connect(on: loop, configuration: configuration, id: id, logger: logger)
            }
        } else {
            connection = try await PostgresConnection.connect(on: loop, configuration: configuration, id: id, logger: logger)
        }
        do {
            let value = try await body(connection)
            if !connection.isClosed { try await connection.close() }
            return value
        } catch {
            if !connection.isClosed { try? await connection.close() }
            throw error
        }
    }
}

public struct DatabaseURLError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// A thread-safe increasing counter for connection ids.
final class ManagedAtomicCounter: Sendable {
    private let value = NIOLockedValueBox(0)
    func next() -> Int {
        value.withLockedValue {
            $0 += 1; return $0
        }
    }
}
