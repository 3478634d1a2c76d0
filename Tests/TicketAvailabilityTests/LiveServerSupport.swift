import Foundation
import HummingbirdTesting
import Logging
import MarqueeCore
import PostgresNIO
import Synchronization
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

/// A database of its own for one suite, on the cluster named by `MARQUEE_TEST_DATABASE_URL` (the pattern of
/// MarqueeServerTests' TestDatabase).
struct TestDatabase: Sendable {
    @TaskLocal static var current: TestDatabase?
    let admin: DatabaseURL
    let url: DatabaseURL
    static let logger = Logger(label: "sdk-test-db")

    static func adminURL() throws -> DatabaseURL {
        guard let text = ProcessInfo.processInfo.environment["MARQUEE_TEST_DATABASE_URL"], !text.isEmpty else {
            throw TestFailure(
                "MARQUEE_TEST_DATABASE_URL is not set: these tests need a running PostgreSQL cluster. Run `make test`, which starts one "
                    + "(or set MARQUEE_TEST_DATABASE_URL to a superuser URL of a cluster with wal_level=logical).")
        }
        return try DatabaseURL(parsing: text)
    }

    static func create() async throws -> TestDatabase {
        let admin = try adminURL()
        let name = "mq_sdk_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12))"
        try await admin.withConnection(logger: logger) { connection in
            _ = try await connection.simpleQuery("create database \(name)").get()
        }
        return TestDatabase(admin: admin, url: admin.with(database: name))
    }

    func drop() async throws {
        let name = url.database
        try await admin.withConnection(logger: Self.logger) { connection in
            try await connection.query(
                "select pg_terminate_backend(pid, 10000) from pg_stat_activity where datname = \(name) and pid <> pg_backend_pid()",
                logger: Self.logger)
            try await connection.query(
                "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = \(name)", logger: Self.logger)
            _ = try await connection.simpleQuery("drop database if exists \(name) with (force)").get()
        }
    }
}

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

/// Remembers log messages so a test can wait for one (the change feed reading its slot).
final class LogWatch: Sendable {
    let messages = AsyncFrameQueue<String>()

    struct Handler: LogHandler {
        let watch: LogWatch
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            watch.messages.push(event.message.description)
            if event.level >= .error {
                print("[server \(event.level)] \(event.message)")
            } else if event.level >= .warning, let error = event.metadata?["error"],
                "\(error)".contains("did not answer") || "\(error)".contains("connection closed (")
            {
                // a database call given up at its deadline or with its closed connection: worth seeing when a test is slow
                print("[server \(event.level)] \(event.message): \(error)")
            }
        }
    }

    func waitFor(_ message: String) async throws {
        try await withDeadline(.seconds(30), "waiting for the server to log '\(message)'") {
            while let logged = try await self.messages.next() { if logged == message { return } }
            throw TestFailure("the log ended before '\(message)'")
        }
    }

    func logger() -> Logger {
        var logger = Logger(label: "marquee-sdk-test") { _ in Handler(watch: self) }
        logger.logLevel = .info
        return logger
    }
}

let testSecret = "marquee-sdk-tests-secret-0123456789abcdef"

struct LiveServer: Sendable {
    let port: Int
    let authority: TokenAuthority
    /// The server's log, for waiting on what it did.
    let log: LogWatch
    var baseURL: URL { URL(string: "http://127.0.0.1:\(port)")! }
    func token(_ role: Role, sub: String?) async throws -> String { try await authority.mint(sub: sub, role: role, lifetime: 3600) }

    /// Creates an event with one ticket type; returns (event, ticket type).
    func createEvent(capacity: Int) async throws -> (UUID, UUID) {
        let service = try await token(.serviceRole, sub: nil)
        let body =
            #"{"name":"SDK test","starts_at":"2030-05-01T20:00:00Z","venue":"Hall","ticket_types":[{"name":"GA","price_cents":2500,"capacity":\#(capacity)}]}"#
        let response = try await URLSessionHTTPTransport().send(
            HTTPRequest(
                method: "POST", url: baseURL.appendingPathComponent("api/events"),
                headers: ["Authorization": "Bearer \(service)", "Content-Type": "application/json"], body: Data(body.utf8)))
        let created = try JSONValue.parse(response.body)
        guard response.status == 201, let event = created["id"]?.stringValue.flatMap(UUID.init(uuidString:)),
            let type = created["ticket_types"]?.arrayValue?.first?["id"]?.stringValue.flatMap(UUID.init(uuidString:))
        else { throw TestFailure("creating the event failed: \(response.status) \(String(decoding: response.body, as: UTF8.self))") }
        return (event, type)
    }

    /// Realtime sockets the server holds open now (from `/metrics`).
    func openSockets() async throws -> Int {
        let response = try await URLSessionHTTPTransport().send(
            HTTPRequest(method: "GET", url: baseURL.appendingPathComponent("metrics"), headers: [:], body: Data()))
        let text = String(decoding: response.body, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("marquee_realtime_connections ") }),
            let value = Double(line.split(separator: " ").last ?? "")
        else { throw TestFailure("no marquee_realtime_connections in /metrics") }
        return Int(value)
    }

    /// The database's counts, as the availability endpoint reads them.
    func truth(_ event: UUID) async throws -> AvailabilitySnapshot {
        try await MarqueeAPI(baseURL: baseURL, http: URLSessionHTTPTransport()).availability(event: event)
    }
}

/// Runs a live Marquee on a random port against the suite's database.
func withLiveServer(_ body: @escaping @Sendable (LiveServer) async throws -> Void) async throws {
    guard let database = TestDatabase.current else {
        _ = try TestDatabase.adminURL()
        throw TestFailure("this suite needs the .testDatabase trait")
    }
    var config = MarqueeConfig()
    config.jwtSecret = testSecret
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("marquee-sdk-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    config.dataDirectory = directory
    config.port = 0
    config.nodeName = "s\(UUID().uuidString.lowercased().prefix(8))"
    let watch = LogWatch()
    let app = try await buildApplication(config: config, database: database.url, logger: watch.logger())
    let authority = await TokenAuthority(secret: testSecret)
    try await app.test(.live) { client in
        try await watch.waitFor("change feed reading")
        let port = try #require(client.port)
        try await body(LiveServer(port: port, authority: authority, log: watch))
    }
}
