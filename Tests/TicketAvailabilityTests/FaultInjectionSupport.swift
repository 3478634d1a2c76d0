import Foundation
import Logging
import MarqueeCore
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

/// Something changed (a picture arrived, a status, a reservation…): wakes whoever waits for a condition to hold, so
/// the tests wait on the events themselves rather than on time.
final class ChangeSignal: Sendable {
    private let changes = Awaitable(0)

    func bump() { changes.update { $0 += 1 } }

    var generation: Int { changes.value }

    /// Returns once the generation is past `seen` (at once if it already is), or when cancelled.
    func wait(after seen: Int) async { await changes.wait { $0 > seen } }

    /// Waits until `condition` holds, checking it again after every change, failing after `limit` (real time).
    func waitUntil(_ what: String, limit: Duration = .seconds(30), _ condition: @escaping @Sendable () async throws -> Bool) async throws {
        try await withDeadline(limit, what) {
            while true {
                let seen = self.generation
                if try await condition() { return }
                await self.wait(after: seen)
                try Task.checkCancellation()
            }
        }
    }
}

/// One SDK client subscribed to an event, remembering the last picture delivered, its statuses and its problems.
final class Follower: Sendable {
    let client: TicketAvailabilityClient
    let event: UUID
    private let signal: ChangeSignal
    private let latestPicture = Mutex<AvailabilitySnapshot?>(nil)
    private let statusHistory = Mutex<[ConnectionStatus]>([])
    private let problemHistory = Mutex<[TicketAvailabilityError]>([])
    private let tasks = Mutex<[Task<Void, Never>]>([])

    private init(client: TicketAvailabilityClient, event: UUID, signal: ChangeSignal) {
        self.client = client
        self.event = event
        self.signal = signal
    }

    /// Starts `count` followers, each handed to `keep` (for the teardown) as soon as it exists.
    static func start(
        _ count: Int, _ configuration: TicketAvailabilityClient.Configuration, event: UUID, http: any HTTPTransport,
        signal: ChangeSignal, keep: @Sendable (Follower) -> Void
    ) async throws -> [Follower] {
        var followers: [Follower] = []
        for _ in 0..<count {
            let follower = Follower(client: TicketAvailabilityClient(configuration: configuration, http: http), event: event, signal: signal)
            keep(follower)
            let statuses = await follower.client.statusUpdates()
            let problems = await follower.client.errors()
            let subscription = try await follower.client.subscribe(event: event)
            let started = [
                Task {
                    for await status in statuses {
                        follower.statusHistory.withLock { $0.append(status) }
                        signal.bump()
                    }
                },
                Task {
                    for await problem in problems {
                        follower.problemHistory.withLock { $0.append(problem) }
                        signal.bump()
                    }
                },
                Task {
                    for await picture in subscription {
                        follower.latestPicture.withLock { $0 = picture }
                        signal.bump()
                    }
                },
            ]
            follower.tasks.withLock { $0 = started }
            followers.append(follower)
        }
        return followers
    }

    /// The last picture the subscription delivered.
    var latest: AvailabilitySnapshot? { latestPicture.withLock { $0 } }
    var statuses: [ConnectionStatus] { statusHistory.withLock { $0 } }
    var problems: [TicketAvailabilityError] { problemHistory.withLock { $0 } }
    var status: ConnectionStatus { statusHistory.withLock { $0.last ?? .disconnected(reason: "no status yet") } }

    func stop() async {
        await client.shutdown()
        for task in tasks.withLock({ $0 }) {
            task.cancel()
            await task.value
        }
    }
}

/// Reservations written straight into the database (one transaction each, as the API does) by a few buyers at
/// once, as many as the test asks for: `waitForMore(n)` lets n more through and waits until they are committed, each
/// buyer starting its next one as soon as its last one ends, whatever the server or the network between it and the
/// clients do meanwhile.
final class ReservationBurst: Sendable {
    private struct Budget {
        /// Reservations asked for and not yet committed by a buyer (a failed one goes back).
        var permits = 0
        var stopped = false
    }
    private struct Counts {
        var reserved = 0
        var failed = 0
    }
    private let budget = Awaitable(Budget())
    private let counts = Mutex(Counts())
    private let workers = Mutex<Task<Void, Never>?>(nil)
    private let signal: ChangeSignal
    static let logger = Logger(label: "fault-burst")

    private init(signal: ChangeSignal) { self.signal = signal }

    static func start(database: DatabaseURL, event: UUID, types: [UUID], signal: ChangeSignal, buyers: Int = 3) -> ReservationBurst {
        let burst = ReservationBurst(signal: signal)
        // a pool: it replaces connections the database closed (a restart), where a lone connection could hang
        let client = PostgresClient(configuration: database.clientConfiguration(), backgroundLogger: logger)
        let task = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { await client.run() }
                await withTaskGroup(of: Void.self) { buyersGroup in
                    for buyer in 0..<buyers {
                        buyersGroup.addTask { await burst.buy(client: client, event: event, types: types, seed: buyer) }
                    }
                }
                group.cancelAll()
            }
        }
        burst.workers.withLock { $0 = task }
        return burst
    }

    /// Takes one permit, waiting for one; false once stopped.
    private func takePermit() async -> Bool {
        while true {
            await budget.wait { $0.permits > 0 || $0.stopped }
            let taken = budget.update { (budget: inout Budget) -> Bool? in
                if budget.stopped { return false }
                guard budget.permits > 0 else { return nil }  // another buyer was first
                budget.permits -= 1
                return true
            }
            if let taken { return taken }
        }
    }

    private func buy(client: PostgresClient, event: UUID, types: [UUID], seed: Int) async {
        var round = seed
        while await takePermit() {
            round += 1
            let type = types[round % types.count]
            let quantity = 1 + round % 3
            let user = "burst-\(UUID().uuidString.prefix(8))"
            do {
                // a query can hang on a connection the database closed while it was idle (a restart): give it up
                try await withDeadline(.seconds(2), "a reservation") {
                    try await client.query(
                        """
                        insert into tickets (event_id, event_ticket_id, user_id, quantity, status, hold_expires_at, idempotency_key)
                        values (\(event), \(type), \(user), \(quantity), 'reserved', now() + interval '10 minutes', \(UUID().uuidString))
                        """, logger: Self.logger)
                }
                counts.withLock { $0.reserved += 1 }
                signal.bump()
            } catch {
                counts.withLock { $0.failed += 1 }
                budget.update { $0.permits += 1 }  // tried again
            }
        }
    }

    /// Reservations committed so far.
    var reserved: Int { counts.withLock { $0.reserved } }

    /// Lets `more` further reservations through, without waiting for them.
    func allow(_ more: Int) { budget.update { $0.permits += more } }

    /// Lets `more` further reservations through and waits until they have been committed.
    func waitForMore(_ more: Int, _ what: String) async throws {
        let target = reserved + more
        allow(more)
        try await signal.waitUntil("waiting for \(more) more reservations \(what)") { self.reserved >= target }
    }

    /// Stops and waits for the statements in flight; returns how many reservations failed (the database was away).
    @discardableResult
    func stop() async -> Int {
        budget.update { $0.stopped = true }
        await workers.withLock { $0 }?.value
        return counts.withLock { $0.failed }
    }
}

/// A Marquee application running in this process on a port of its own, started and stopped by the test (so that
/// a test can restart it).
final class RunningServer: Sendable {
    let port: Int
    let authority: TokenAuthority
    private let group: ServiceGroup
    private let task: Task<Void, any Error>
    var baseURL: URL { URL(string: "http://127.0.0.1:\(port)")! }

    private init(port: Int, authority: TokenAuthority, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.authority = authority
        self.group = group
        self.task = task
    }

    static func start(
        database: DatabaseURL, node: String, dataDirectory: String, configure: (inout MarqueeConfig) -> Void = { _ in }
    ) async throws -> RunningServer {
        var config = MarqueeConfig()
        config.jwtSecret = testSecret
        config.dataDirectory = dataDirectory
        config.port = 0
        config.nodeName = node
        configure(&config)
        let watch = LogWatch()
        let logger = watch.logger()
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .bufferingNewest(1))
        let app = try await buildApplication(config: config, database: database, logger: logger) { channel in
            portSink.yield(channel.localAddress?.port ?? 0)
        }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        let port: Int
        do {
            port = try await withDeadline(.seconds(30), "waiting for the server to listen") {
                for await port in ports { return port }
                throw TestFailure("the server ended before listening")
            }
            try await watch.waitFor("change feed reading")
        } catch {
            await group.triggerGracefulShutdown()
            _ = await task.result
            throw error
        }
        return RunningServer(port: port, authority: await TokenAuthority(secret: testSecret), group: group, task: task)
    }

    func token(_ role: Role, sub: String?) async throws -> String { try await authority.mint(sub: sub, role: role, lifetime: 3600) }

    /// The database's counts, as the availability endpoint reads them.
    func truth(_ event: UUID) async throws -> AvailabilitySnapshot {
        try await MarqueeAPI(baseURL: baseURL, http: URLSessionHTTPTransport()).availability(event: event)
    }

    /// Shuts down gracefully (sockets closed, services stopped) and waits for it.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await withDeadline(.seconds(30), "waiting for the server to stop") { try await self.task.value }
    }
}

/// A server (replaceable), the proxy in front of it, an event with two ticket types, and the clients' settings.
final class FaultScene: Sendable {
    let database: DatabaseURL
    let proxy: FaultProxy
    let event: UUID
    let types: [UUID]
    let anon: String
    let signal = ChangeSignal()
    let node = "f\(UUID().uuidString.lowercased().prefix(8))"
    let dataDirectory: String
    private let current: Mutex<RunningServer?>

    private init(database: DatabaseURL, server: RunningServer, proxy: FaultProxy, event: UUID, types: [UUID], anon: String, dataDirectory: String) {
        self.database = database
        self.current = Mutex(server)
        self.proxy = proxy
        self.event = event
        self.types = types
        self.anon = anon
        self.dataDirectory = dataDirectory
    }

    var server: RunningServer? { current.withLock { $0 } }

    /// A configuration whose socket goes through the proxy; its REST calls (snapshots, polling) go straight to the
    /// server (`http`), so that polling still works while the proxy refuses sockets.
    func configuration() -> TicketAvailabilityClient.Configuration {
        var configuration = TicketAvailabilityClient.Configuration(
            baseURL: URL(string: "http://127.0.0.1:\(proxy.port)")!, accessToken: anon)
        configuration.coalescingInterval = .milliseconds(50)
        configuration.reconnectBaseDelay = .milliseconds(100)
        configuration.maxReconnectDelay = .milliseconds(800)
        configuration.connectTimeout = .seconds(2)
        configuration.heartbeatInterval = .milliseconds(500)
        configuration.heartbeatTimeout = .milliseconds(500)
        configuration.pollInterval = .milliseconds(200)
        return configuration
    }

    /// REST calls to whichever server runs now.
    var http: any HTTPTransport { CurrentServerHTTP(scene: self) }

    /// Stops the server (its clients lose their sockets).
    func stopServer() async throws {
        let server = current.withLock { current in
            defer { current = nil }
            return current
        }
        try await server?.stop()
    }

    /// Starts a server again (same node, same database) and points the proxy at it.
    func startServer() async throws {
        let server = try await RunningServer.start(database: database, node: node, dataDirectory: dataDirectory)
        current.withLock { $0 = server }
        proxy.retarget(port: server.port)
    }

    /// Waits until every follower's last picture, and its client's current picture, equal the database's counts
    /// (sold, reserved, available, version… of every ticket type), read now.
    func waitForConvergence(_ followers: [Follower], _ what: String, limit: Duration = .seconds(30)) async throws {
        guard let server else { throw TestFailure("no server is running") }
        let truth = try await server.truth(event)
        let expected = Dictionary(uniqueKeysWithValues: truth.ticketTypes.map { ($0.id, $0) })
        #expect(expected.count == types.count)
        #expect(expected.values.allSatisfy { $0.sold + $0.reserved + $0.available == $0.capacity })
        let event = self.event
        try await signal.waitUntil("waiting for every client to show the database's counts \(what) (version \(truth.version))", limit: limit) {
            for follower in followers {
                guard let latest = follower.latest,
                    Dictionary(uniqueKeysWithValues: latest.ticketTypes.map { ($0.id, $0) }) == expected,
                    let current = await follower.client.snapshot(event: event),
                    Dictionary(uniqueKeysWithValues: current.ticketTypes.map { ($0.id, $0) }) == expected
                else { return false }
            }
            return true
        }
    }

    /// Waits until every follower's last picture is at least as new, type by type, as the database's counts read now
    /// (changes keep coming, so the pictures may be newer still by then).
    func waitForCatchUp(_ followers: [Follower], _ what: String, limit: Duration = .seconds(30)) async throws {
        guard let server else { throw TestFailure("no server is running") }
        let truth = try await server.truth(event)
        try await signal.waitUntil("waiting for every client to catch up with version \(truth.version) \(what)", limit: limit) {
            followers.allSatisfy { follower in
                guard let latest = follower.latest else { return false }
                let seen = Dictionary(uniqueKeysWithValues: latest.ticketTypes.map { ($0.id, $0.version) })
                return truth.ticketTypes.allSatisfy { (seen[$0.id] ?? 0) >= $0.version }
            }
        }
    }

    /// Starts `count` followers, waits for their first pictures and their live sockets, then starts a reservation burst
    /// (which has let none through yet).
    func startFollowersAndBurst(
        _ count: Int, keep: @escaping @Sendable (Follower) -> Void
    ) async throws -> (followers: [Follower], burst: ReservationBurst) {
        let followers = try await Follower.start(count, configuration(), event: event, http: http, signal: signal, keep: keep)
        try await waitForFirstPictures(followers)
        // a first picture may come over HTTP while a socket is still being opened: the faults are about live sockets
        try await waitForStatus(followers, "connected") { $0 == .connected }
        return (followers, ReservationBurst.start(database: database, event: event, types: types, signal: signal))
    }

    /// The end of a fault: waits until every follower is connected again, lets 10 more reservations through (none may
    /// fail), and waits until every follower shows the database's counts.
    func reconnectAndConverge(_ followers: [Follower], _ burst: ReservationBurst, _ what: String) async throws {
        try await waitForStatus(followers, "connected again \(what)") { $0 == .connected }
        try await burst.waitForMore(10, what)
        #expect(await burst.stop() == 0)
        try await waitForConvergence(followers, what)
    }

    /// Waits until every follower has a first picture.
    func waitForFirstPictures(_ followers: [Follower]) async throws {
        let count = types.count
        try await signal.waitUntil("waiting for every client's first picture") {
            followers.allSatisfy { $0.latest?.ticketTypes.count == count }
        }
    }

    /// Waits until every follower's status satisfies `predicate`.
    func waitForStatus(_ followers: [Follower], _ what: String, _ predicate: @escaping @Sendable (ConnectionStatus) -> Bool) async throws {
        try await signal.waitUntil("waiting until every client is \(what)") { followers.allSatisfy { predicate($0.status) } }
    }

    /// Runs a server on `database` with an event of two ticket types and a fault proxy in front of it; stops the
    /// followers, the proxy and the server whatever happens.
    static func run(
        database: DatabaseURL, _ body: @escaping @Sendable (FaultScene, _ keep: @escaping @Sendable (Follower) -> Void) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("marquee-fault-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = "f\(UUID().uuidString.lowercased().prefix(8))"
        let server = try await RunningServer.start(database: database, node: node, dataDirectory: directory)
        let kept = Mutex<[Follower]>([])
        var proxy: FaultProxy?
        let result: Result<Void, any Error>
        do {
            let (event, types) = try await createEvent(server, capacities: [20000, 15000])
            proxy = try await FaultProxy.start(targetPort: server.port)
            let scene = FaultScene(
                database: database, server: server, proxy: proxy!, event: event, types: types, anon: try await server.token(.anon, sub: nil),
                dataDirectory: directory)
            do {
                try await body(scene) { follower in kept.withLock { $0.append(follower) } }
                result = .success(())
            } catch {
                result = .failure(error)
            }
            for follower in kept.withLock({ $0 }) { await follower.stop() }
            await proxy?.shutdown()
            try await scene.stopServer()
        } catch {
            await proxy?.shutdown()
            try? await server.stop()
            throw error
        }
        try result.get()
    }
}

/// REST calls sent to the scene's current server (a restart changes its port).
struct CurrentServerHTTP: HTTPTransport {
    let scene: FaultScene
    let base = URLSessionHTTPTransport()

    struct NoServer: Error, CustomStringConvertible {
        var description: String { "no server is running" }
    }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard let port = scene.server?.port else { throw NoServer() }
        var redirected = request
        var components = URLComponents(url: request.url, resolvingAgainstBaseURL: false)
        components?.port = port
        redirected.url = try #require(components?.url)
        return try await base.send(redirected)
    }
}

/// Creates an event with one ticket type per capacity (priced apart, so their order is fixed).
func createEvent(_ server: RunningServer, capacities: [Int]) async throws -> (UUID, [UUID]) {
    let service = try await server.token(.serviceRole, sub: nil)
    let types = capacities.enumerated().map { index, capacity in
        #"{"name":"T\#(index)","price_cents":\#(1000 * (index + 1)),"capacity":\#(capacity)}"#
    }
    let body =
        #"{"name":"Fault test","starts_at":"2030-05-01T20:00:00Z","venue":"Hall","ticket_types":[\#(types.joined(separator: ","))]}"#
    let response = try await URLSessionHTTPTransport().send(
        HTTPRequest(
            method: "POST", url: server.baseURL.appendingPathComponent("api/events"),
            headers: ["Authorization": "Bearer \(service)", "Content-Type": "application/json"], body: Data(body.utf8)))
    let created = try JSONValue.parse(response.body)
    guard response.status == 201, let event = created["id"]?.stringValue.flatMap(UUID.init(uuidString:)),
        let ids = created["ticket_types"]?.arrayValue?.compactMap({ $0["id"]?.stringValue.flatMap(UUID.init(uuidString:)) }),
        ids.count == capacities.count
    else { throw TestFailure("creating the event failed: \(response.status) \(String(decoding: response.body, as: UTF8.self))") }
    return (event, ids)
}
