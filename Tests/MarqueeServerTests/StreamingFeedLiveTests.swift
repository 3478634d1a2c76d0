import Foundation
import Logging
import MarqueeCore
import PostgresNIO
import Testing

@testable import MarqueeServer

/// A change feed on its own (no HTTP server) against a real PostgreSQL, with a hub whose connections the test reads.
struct FeedHarness: Sendable {
    let url: DatabaseURL
    let hub: RealtimeHub
    let status: ChangeFeedStatus
    let log: LogWatch
    let slot: String

    /// A connection of the hub subscribed to inserts into `public.events` whose `name` is `name`.
    func watchEvents(named name: String, id: Int) throws -> ConnectionHandle {
        let connection = ConnectionHandle(id: id, serializer: .v1, outbox: Outbox(capacity: 4096))
        hub.register(connection)
        var session = RealtimeSession(
            connectionID: id, connectToken: .valid(Viewer(role: .serviceRole, userID: nil), expiresAt: nil), policy: hub.policy)
        let binding: JSONObject = ["event": "INSERT", "schema": "public", "table": "events", "filter": .string("name=eq.\(name)")]
        for case .subscribe(let topic, let joinRef, let subscriptions, let membership) in session.receive(
            joinMessage("realtime:watch-\(id)", ref: "1", bindings: [binding]))
        {
            hub.join(connectionID: id, topic: topic, joinRef: joinRef, subscriptions: subscriptions, membership: membership)
        }
        return connection
    }

    /// The next change queued on `connection`, decoded; fails after `limit`.
    func nextChange(_ connection: ConnectionHandle, _ what: String, within limit: Duration = .seconds(20)) async throws -> JSONValue {
        let frame = try await withDeadline(limit, "waiting for \(what)") { await connection.outbox.next() }
        guard let text = frame?.text else { throw TestFailure("expected \(what), got \(String(describing: frame))") }
        let message = try PhoenixSerializer.v1.decode(text)
        guard message.event == "postgres_changes" else { throw TestFailure("expected \(what), got \(text)") }
        return message.payload
    }

    /// Runs one SQL script in the feed's database and returns `pg_current_wal_lsn()` after it.
    @discardableResult
    func commit(_ sql: String) async throws -> PgLSN {
        try await url.withConnection(logger: TestDatabase.logger) { connection in
            _ = try await connection.simpleQuery(sql).get()
            for try await text in try await connection.query("select pg_current_wal_lsn()::text", logger: TestDatabase.logger).decode(String.self) {
                return PgLSN(text) ?? .invalid
            }
            return .invalid
        }
    }

    /// The slot's confirmed position (nil while the slot does not exist).
    func confirmedFlush() async throws -> PgLSN? {
        try await url.withConnection(logger: TestDatabase.logger) { connection in
            let rows = try await connection.query(
                "select confirmed_flush_lsn::text from pg_replication_slots where slot_name = \(slot)", logger: TestDatabase.logger)
            for try await text in rows.decode(String?.self) { return text.flatMap { PgLSN($0) } }
            return nil
        }
    }

    /// The process id of the walsender streaming the slot, if one is.
    func walsender() async throws -> Int32? {
        try await url.withConnection(logger: TestDatabase.logger) { connection in
            let rows = try await connection.query(
                "select active_pid from pg_replication_slots where slot_name = \(slot) and active_pid is not null", logger: TestDatabase.logger)
            for try await pid in rows.decode(Int32.self) { return pid }
            return nil
        }
    }

    /// Waits (with a deadline, asking the database each time) until `condition` holds.
    func waitUntil(_ what: String, within limit: Duration = .seconds(20), _ condition: @escaping @Sendable () async throws -> Bool) async throws {
        try await withDeadline(limit, "waiting until \(what)") {
            while try await !condition() { await Task.yield() }
        }
    }

    /// Builds a feed for `url` (migrated here), prepares its slot as the server does, runs it, waits until it reads,
    /// runs `body`, and stops the feed as a graceful shutdown does.
    static func run(
        url: DatabaseURL, configure: (inout ChangeFeed.Configuration) -> Void = { _ in },
        _ body: @Sendable (FeedHarness) async throws -> Void
    ) async throws {
        let log = LogWatch()
        let logger = log.logger(label: "feed-test")
        _ = try await Migrator(directory: try Migrator.locateDirectory()).migrate(url, logger: logger)
        let slot = ChangeFeed.Configuration.slotName(database: url.database, node: "f\(randomSuffix(8))")
        var configuration = ChangeFeed.Configuration(slotName: slot)
        configure(&configuration)
        let harness = FeedHarness(url: url, hub: RealtimeHub(), status: ChangeFeedStatus(), log: log, slot: slot)
        let feed = ChangeFeed(database: url, hub: harness.hub, status: harness.status, configuration: configuration, logger: logger)
        try await feed.prepareSlot()
        let task = Task { try await feed.run() }
        do {
            try await log.waitFor("change feed reading")
            try await body(harness)
        } catch {
            task.cancel()
            _ = try? await task.value
            throw error
        }
        task.cancel()
        try await withDeadline(.seconds(10), "the feed stopping") { try await task.value }
    }
}

/// The streaming change feed against the test cluster: changes pushed over the replication protocol, positions
/// confirmed only once handed on, and the faults a database and its operators bring.
@Suite(.testDatabase) struct StreamingFeedLiveTests {
    @Test func changesArePushedOverTheReplicationProtocol() async throws {
        let database = try TestDatabase.require()
        try await FeedHarness.run(url: database.url) { feed in
            #expect(feed.status.mode == .streaming)
            #expect(feed.status.isConnected)
            #expect(feed.hub.feedGate.isLive)
            #expect(try await feed.walsender() != nil)
            let watcher = try feed.watchEvents(named: "pushed", id: 1)
            let after = try await feed.commit("insert into events (name, starts_at) values ('pushed', now())")
            let change = try await feed.nextChange(watcher, "the pushed insert")
            #expect(change["data"]?["record"]?["name"] == "pushed")
            #expect(change["data"]?["type"] == "INSERT")
            #expect(feed.status.lastLSN > .invalid)
            // reported to PostgreSQL soon after it was handed on
            try await feed.waitUntil("the slot is confirmed past the insert") { (try await feed.confirmedFlush() ?? .invalid) >= after }
            let detail = feed.status.readinessDetail()
            #expect(detail["mode"] == "streaming")
            #expect(detail["streaming"] == .bool(true))
            #expect(detail["reconnects"]?.intValue == 0)
        }
    }

    @Test func aGracefulStopFlushesThePosition() async throws {
        let database = try TestDatabase.require()
        let recorder = SlotPosition()
        try await FeedHarness.run(
            url: database.url,
            configure: {
                $0.stream.feedbackDelay = .seconds(3600)
                $0.stream.statusInterval = .seconds(3600)
                $0.stream.silenceLimit = .seconds(7200)
            }
        ) { feed in
            let watcher = try feed.watchEvents(named: "flushed-on-stop", id: 1)
            let before = try #require(try await feed.confirmedFlush())
            try await feed.commit("insert into events (name, starts_at) values ('flushed-on-stop', now())")
            _ = try await feed.nextChange(watcher, "the insert")
            #expect(try await feed.confirmedFlush() == before, "reported before the stop although no status update was due")
            await recorder.set(feed.status.lastLSN, slot: feed.slot, before: before)
        }
        let (handedOn, slot, before) = try #require(await recorder.value)
        let url = database.url
        let confirmed = try await url.withConnection(logger: TestDatabase.logger) { connection -> String? in
            let rows = try await connection.query(
                "select confirmed_flush_lsn::text from pg_replication_slots where slot_name = \(slot)", logger: TestDatabase.logger)
            for try await text in rows.decode(String?.self) { return text }
            return nil
        }
        let position = try #require(confirmed.flatMap { PgLSN($0) })
        #expect(position > before)
        #expect(position >= handedOn)
    }

    @Test func pollingIsChosenByConfiguration() async throws {
        let database = try TestDatabase.require()
        try await FeedHarness.run(url: database.url, configure: { $0.mode = .polling }) { feed in
            #expect(feed.status.mode == .polling)
            // no WAL sender serves the slot: the feed reads it over a plain session
            let slot = feed.slot
            let senders = try await feed.url.withConnection(logger: TestDatabase.logger) { connection in
                var count = 0
                let rows = try await connection.query(
                    """
                    select count(*)::int from pg_replication_slots s join pg_stat_activity a on a.pid = s.active_pid
                    where s.slot_name = \(slot) and a.backend_type = 'walsender'
                    """,
                    logger: TestDatabase.logger)
                for try await value in rows.decode(Int.self) { count = value }
                return count
            }
            #expect(senders == 0)
            let watcher = try feed.watchEvents(named: "polled", id: 1)
            try await feed.commit("insert into events (name, starts_at) values ('polled', now())")
            let change = try await feed.nextChange(watcher, "the polled insert")
            #expect(change["data"]?["record"]?["name"] == "polled")
        }
    }
}

/// What a test body learnt, read after the feed stopped.
actor SlotPosition {
    var value: (PgLSN, String, PgLSN)?
    func set(_ lsn: PgLSN, slot: String, before: PgLSN) { value = (lsn, slot, before) }
}

/// Runs `body` with a PostgreSQL cluster of its own (so the shared test cluster is never restarted or reconfigured),
/// stopped and removed afterwards.
func withPrivateCluster(_ body: (EmbeddedPostgres, DatabaseURL, String) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("marquee-feed-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let postgres = EmbeddedPostgres(dataDirectory: directory + "/db", logger: Logger(label: "feed-test-cluster"))
    let url = try DatabaseURL(parsing: try await postgres.start())
    do {
        try await body(postgres, url, directory + "/db")
    } catch {
        try? await postgres.stop()
        throw error
    }
    try await postgres.stop()
}

/// Faults that need a cluster of their own: a restart, a server that refuses replication, a short wal_sender_timeout.
@Suite struct StreamingFeedClusterTests {
    @Test func aTransactionOf100kRowsCutMidStreamArrivesWholeAfterTheReconnect() async throws {
        // on a cluster of its own: every logical slot of a cluster decodes the whole transaction, and the shared
        // test cluster serves the other suites' feeds
        try await withPrivateCluster { _, url, _ in
            try await FeedHarness.run(url: url) { feed in
                let watcher = try feed.watchEvents(named: "row-100000", id: 1)
                let delivered = feed.status.changesDelivered
                try await feed.commit(
                    "insert into events (name, starts_at) select 'row-' || n, now() from generate_series(1, 100000) n")
                // cut the stream while PostgreSQL decodes and sends the transaction
                let pid = try #require(try await feed.walsender())
                try await feed.commit("select pg_terminate_backend(\(pid))")
                let change = try await feed.nextChange(watcher, "the last row of the big transaction", within: .seconds(120))
                #expect(change["data"]?["record"]?["name"] == "row-100000")
                #expect(feed.status.reconnects >= 1)
                // every row reached the hub (at least once: a cut after delivery and before the confirmation resends it)
                try await feed.waitUntil("every row was counted") { feed.status.changesDelivered - delivered >= 100_000 }
                try await feed.waitUntil("the slot is confirmed past the transaction") {
                    (try await feed.confirmedFlush() ?? .invalid) >= feed.status.lastLSN && feed.status.lastLSN > .invalid
                }
            }
        }
    }

    @Test func aDroppedSlotIsCreatedAgainAndEveryClientToldToResync() async throws {
        // on a cluster of its own: creating a logical slot waits for every transaction open in the cluster to end,
        // and the other suites hold some open on the shared one for as long as they like
        try await withPrivateCluster { _, url, _ in
            try await FeedHarness.run(url: url) { feed in
                let watcher = try feed.watchEvents(named: "after-the-drop", id: 1)
                // an operator ends the walsender and drops the slot (retrying: the feed takes the slot back within 100 ms)
                let slot = feed.slot
                try await feed.waitUntil("the slot is dropped") {
                    try await feed.url.withConnection(logger: TestDatabase.logger) { connection in
                        let rows = try await connection.query(
                            """
                            select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = \(slot) and active_pid is not null
                            """, logger: TestDatabase.logger)
                        for try await _ in rows {}
                        do {
                            try await connection.query("select pg_drop_replication_slot(\(slot))", logger: TestDatabase.logger)
                            return true
                        } catch {
                            return false  // still active: try again
                        }
                    }
                }
                // the clients are told to reconnect and resync
                let frame = try await withDeadline(.seconds(90), "the resync close") { await watcher.outbox.next() }
                guard case .close(let code, let reason) = frame else { throw TestFailure("expected a close frame, got \(String(describing: frame))") }
                #expect(code == 1013)
                #expect(reason.contains("resync"))
                try await feed.log.waitFor("replication slot was gone (dropped?); created it again and told every client to resync")
                try await feed.log.waitFor("change feed reading")
                #expect(feed.status.slotsRecreated == 1)
                // and the feed streams from the new slot
                let again = try feed.watchEvents(named: "after-the-drop", id: 2)
                try await feed.commit("insert into events (name, starts_at) values ('after-the-drop', now())")
                let change = try await feed.nextChange(again, "a change after the slot was created again")
                #expect(change["data"]?["record"]?["name"] == "after-the-drop")
            }
        }
    }

    @Test func theFeedSurvivesAPostgreSQLRestartAndJoinsMadeMeanwhileGoLiveWhenItIsBack() async throws {
        try await withPrivateCluster { postgres, url, _ in
            try await FeedHarness.run(url: url) { feed in
                let watcher = try feed.watchEvents(named: "after-restart", id: 1)
                try await postgres.stop()
                try await feed.log.waitFor("change feed interrupted; reconnecting")
                #expect(!feed.hub.feedGate.isLive)
                #expect(!feed.status.isConnected)

                // a join while the feed is away is told so, as the gateway sends it
                let late = try feed.watchEvents(named: "after-restart", id: 2)
                let notice = PhoenixMessage(
                    joinRef: "1", topic: "realtime:watch-2", event: "system",
                    payload: FeedGate.payload(topic: "realtime:watch-2", status: "ok", message: FeedGate.subscribed))
                let told = feed.hub.feedGate.admit(notice, connection: late)
                #expect(told.payload["status"] == "error")
                #expect(told.payload["message"]?.stringValue == FeedGate.waiting)

                _ = try await postgres.start(preferredPort: url.port)
                try await feed.log.waitFor("change feed reading")
                #expect(feed.status.reconnects >= 1)
                // the late channel goes live
                let live = try await withDeadline(.seconds(20), "Subscribed to PostgreSQL") { await late.outbox.next() }
                let message = try PhoenixSerializer.v1.decode(try #require(live?.text))
                #expect(message.event == "system")
                #expect(message.payload["message"] == "Subscribed to PostgreSQL")
                // and changes flow to both
                try await feed.commit("insert into events (name, starts_at) values ('after-restart', now())")
                _ = try await feed.nextChange(watcher, "the insert after the restart")
                _ = try await feed.nextChange(late, "the insert after the restart, on the late channel")
            }
        }
    }

    /// PgBouncer (a real pooler, Debian's 1.18) refuses the `replication` startup parameter, as many poolers and
    /// managed plans do: the feed, configured to stream, polls over SQL through the pooler instead. (PostgreSQL's own
    /// `pg_hba.conf` cannot refuse only logical replication: its `replication` keyword matches physical replication.)
    @Test func aPoolerThatRefusesReplicationConnectionsMakesTheFeedPoll() async throws {
        try await withPrivateCluster { _, url, directory in
            try await withPgBouncer(in: directory, in: url) { pooled in
                try await FeedHarness.run(url: pooled) { feed in
                    // configured to stream, it took the polling feed instead
                    #expect(feed.status.mode == .polling)
                    #expect(feed.status.isConnected)
                    #expect(feed.hub.feedGate.isLive)
                    let watcher = try feed.watchEvents(named: "polled-through-the-pooler", id: 1)
                    try await feed.commit("insert into events (name, starts_at) values ('polled-through-the-pooler', now())")
                    let change = try await feed.nextChange(watcher, "the insert read by polling")
                    #expect(change["data"]?["record"]?["name"] == "polled-through-the-pooler")
                    #expect(feed.status.readinessDetail()["mode"] == "polling")
                }
            }
        }
    }

    @Test func theStreamOutlivesWalSenderTimeoutWhileIdle() async throws {
        try await withPrivateCluster { _, url, _ in
            try await url.withConnection(logger: TestDatabase.logger) { connection in
                _ = try await connection.simpleQuery("alter system set wal_sender_timeout = '1s'").get()
                _ = try await connection.simpleQuery("select pg_reload_conf()").get()
            }
            try await FeedHarness.run(url: url) { feed in
                let pid = try #require(try await feed.walsender())
                // the same WAL sender keeps hearing from the feed for three times its timeout without a change (asked
                // on one connection, at most every 100 ms, until three timeouts have passed)
                try await withDeadline(.seconds(20), "three timeouts passing with the stream kept alive") {
                    try await feed.url.withConnection(logger: TestDatabase.logger) { connection in
                        while true {
                            let rows = try await connection.query(
                                """
                                select backend_start < now() - interval '3 s' and reply_time > now() - interval '1 s', pg_sleep(0.1)::text
                                from pg_stat_replication where pid = \(pid)
                                """, logger: TestDatabase.logger)
                            var alive: Bool?
                            for try await (value, _) in rows.decode((Bool, String).self) { alive = value }
                            guard let alive else { throw TestFailure("the WAL sender \(pid) is gone: the stream did not outlive wal_sender_timeout") }
                            if alive { return }
                        }
                    }
                }
                #expect(feed.status.reconnects == 0)
                let watcher = try feed.watchEvents(named: "after-idle", id: 1)
                try await feed.commit("insert into events (name, starts_at) values ('after-idle', now())")
                _ = try await feed.nextChange(watcher, "an insert after the idle stretch")
            }
        }
    }
}

/// Runs PgBouncer (session pooling, SCRAM) in front of `url` while `body` runs; `body` gets the pooled URL.
func withPgBouncer(in directory: String, in url: DatabaseURL, _ body: (DatabaseURL) async throws -> Void) async throws {
    guard
        let pgbouncer = ProcessRunner.which("pgbouncer")
            ?? (FileManager.default.isExecutableFile(atPath: "/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : nil)
    else {
        throw TestFailure("pgbouncer is not installed: run scripts/setup.sh (apt-get install pgbouncer)")
    }
    let folder = directory + "/pgbouncer"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder)  // its log and pid file, as another user
    let port = try await EmbeddedPostgres.freePort()
    let password = try #require(url.password)
    try "\"\(url.username)\" \"\(password)\"\n".write(toFile: folder + "/userlist.txt", atomically: true, encoding: .utf8)
    try """
    [databases]
    \(url.database) = host=127.0.0.1 port=\(url.port) dbname=\(url.database)
    [pgbouncer]
    listen_addr = 127.0.0.1
    listen_port = \(port)
    unix_socket_dir =
    auth_type = scram-sha-256
    auth_file = \(folder)/userlist.txt
    pool_mode = session
    ignore_startup_parameters = extra_float_digits, IntervalStyle, bytea_output
    logfile = \(folder)/pgbouncer.log
    pidfile = \(folder)/pgbouncer.pid

    """.write(toFile: folder + "/pgbouncer.ini", atomically: true, encoding: .utf8)
    for file in ["userlist.txt", "pgbouncer.ini"] {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: folder + "/" + file)
    }
    // PgBouncer does not run as root: as root, it runs as the embedded cluster's system user
    let started =
        geteuid() == 0
        ? try await ProcessRunner.run(
            ProcessRunner.which("runuser") ?? "/usr/sbin/runuser", ["-u", "marquee", "--", pgbouncer, "-d", folder + "/pgbouncer.ini"])
        : try await ProcessRunner.run(pgbouncer, ["-d", folder + "/pgbouncer.ini"])
    guard started.succeeded else { throw TestFailure("pgbouncer did not start: \(started.output)") }
    // it forks into the background first and listens after: wait until its log says it is up
    try await withDeadline(.seconds(10), "pgbouncer listening") {
        while !((try? String(contentsOfFile: folder + "/pgbouncer.log", encoding: .utf8)) ?? "").contains("process up") { await Task.yield() }
    }
    func stop() {
        if let text = try? String(contentsOfFile: folder + "/pgbouncer.pid", encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(pid, SIGKILL)  // it inherits the test process's blocked signals, so SIGTERM would wait
        }
    }
    var pooled = url
    pooled.port = port
    do {
        try await body(pooled)
    } catch {
        stop()
        let log = (try? String(contentsOfFile: folder + "/pgbouncer.log", encoding: .utf8)) ?? ""
        throw TestFailure("\(String(reflecting: error)); pgbouncer's log ends: \(log.suffix(600))")
    }
    stop()
}
