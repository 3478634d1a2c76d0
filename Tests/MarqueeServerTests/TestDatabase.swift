import Foundation
import HummingbirdTesting
import Logging
import PostgresNIO
import Testing

@testable import MarqueeServer

/// A database of its own for one test suite, created on the cluster named by `MARQUEE_TEST_DATABASE_URL` and dropped
/// (with its replication slots) when the suite ends.
struct TestDatabase: Sendable {
    @TaskLocal static var current: TestDatabase?

    let admin: DatabaseURL
    let url: DatabaseURL
    var name: String { url.database }

    static let logger = Logger(label: "marquee-test-db")

    static func adminURL() throws -> DatabaseURL {
        guard let text = ProcessInfo.processInfo.environment["MARQUEE_TEST_DATABASE_URL"], !text.isEmpty else {
            throw TestFailure(
                "MARQUEE_TEST_DATABASE_URL is not set: these tests need a running PostgreSQL cluster. Run `make test`, which starts one "
                    + "(or set MARQUEE_TEST_DATABASE_URL to a superuser URL of a cluster with wal_level=logical).")
        }
        return try DatabaseURL(parsing: text)
    }

    /// The suite's database; fails the test with instructions when the suite was not given one.
    static func require() throws -> TestDatabase {
        guard let current else {
            _ = try adminURL()
            throw TestFailure("this suite needs the .testDatabase trait")
        }
        return current
    }

    static func create() async throws -> TestDatabase {
        let admin = try adminURL()
        let name = "mq_swift_\(randomSuffix(12))"
        try await admin.withConnection(logger: logger) { connection in
            _ = try await connection.simpleQuery("create database \(name)").get()
        }
        return TestDatabase(admin: admin, url: admin.with(database: name))
    }

    /// Ends every session still using the database, drops its replication slots, then the database.
    func drop() async throws {
        let name = self.name
        try await admin.withConnection(logger: Self.logger) { connection in
            try await connection.query(
                "select pg_terminate_backend(pid, 10000) from pg_stat_activity where datname = \(name) and pid <> pg_backend_pid()",
                logger: Self.logger)
            try await connection.query(
                "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = \(name)", logger: Self.logger)
            _ = try await connection.simpleQuery("drop database if exists \(name) with (force)").get()
        }
    }

    /// Runs one statement (or script) in the suite's database.
    func execute(_ sql: String) async throws {
        try await url.withConnection(logger: Self.logger) { connection in
            _ = try await connection.simpleQuery(sql).get()
        }
    }

    /// The first column of each row of a query, as text.
    func column(_ sql: String) async throws -> [String?] {
        try await url.withConnection(logger: Self.logger) { connection in
            var values: [String?] = []
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Self.logger) {
                values.append(try row.decode(String?.self))
            }
            return values
        }
    }
}

/// Gives a suite a fresh database (`TestDatabase.current` inside its tests) and drops it afterwards.
struct TestDatabaseTrait: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let database = try await TestDatabase.create()
        do {
            try await TestDatabase.$current.withValue(database) { try await function() }
        } catch {
            try? await database.drop()
            throw error
        }
        try await database.drop()
    }
}

extension Trait where Self == TestDatabaseTrait {
    static var testDatabase: Self { TestDatabaseTrait() }
}

// MARK: - A running app

/// A running Marquee on a random port, with a way to mint tokens for it.
struct LiveApp: Sendable {
    let client: any TestClientProtocol
    let port: Int
    let authority: TokenAuthority
    let database: TestDatabase
    /// The server's log, to wait for a line (e.g. `realtime disconnected`).
    let log: LogWatch

    func token(_ role: Role = .authenticated, sub: String? = "user-1", lifetime: TimeInterval? = 3600) async throws -> String {
        try await authority.mint(sub: sub, role: role, lifetime: lifetime)
    }
}

/// Builds the app with `buildApplication` against the suite's database, runs it, waits until its change feed reads
/// its slot (so that no change made by the test can be missed), and runs `body`.
func withLiveApp(_ body: @escaping @Sendable (LiveApp) async throws -> Void) async throws {
    let database = try TestDatabase.require()
    var config = MarqueeConfig()
    config.jwtSecret = testSecret
    config.dataDirectory = try temporaryDirectory()
    config.port = 0
    // apps of tests running side by side on one database each read their own slot
    config.nodeName = "t\(randomSuffix(8))"
    defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
    let watch = LogWatch()
    let app = try await buildApplication(config: config, database: database.url, logger: watch.logger())
    let authority = await TokenAuthority(secret: testSecret)
    try await app.test(.live) { client in
        try await watch.waitFor("change feed reading")
        let port = try #require(client.port)
        try await body(LiveApp(client: client, port: port, authority: authority, database: database, log: watch))
    }
}
