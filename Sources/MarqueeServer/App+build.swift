import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import MarqueeCore
import NIOCore
import NIOPosix
import PostgresNIO
import ServiceLifecycle

/// The parts a running server is made of, so tests can reach them.
public struct AppDependencies: Sendable {
    public var config: MarqueeConfig
    public var database: DatabaseURL
    public var client: PostgresClient
    public var authority: TokenAuthority
    public var events: any EventRepository
    public var reservations: any ReservationRepository
    public var hub: RealtimeHub
    public var feedStatus: ChangeFeedStatus
    public var gateway: RealtimeGateway
    /// This server's metrics registry: everything below counts into it.
    public var metrics: MetricsRegistry
    public var webMetrics: WebMetrics
    public var analytics: EventAnalytics
    public var httpMetrics: HTTPMetrics
    /// The bound on every database call made for a request or a join.
    public var databaseDeadline = DatabaseDeadline()
}

/// Builds the HTTP application with its services: the connection pool, the hold sweeper, and (when given) the
/// embedded PostgreSQL, which is listed first so that it stops last. Migrations run first, before any service.
public func buildApplication(
    config: MarqueeConfig,
    database: DatabaseURL,
    embedded: EmbeddedPostgres? = nil,
    logger: Logger,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) async throws -> some ApplicationProtocol {
    let secret = try SecretStore.loadOrCreate(explicit: config.jwtSecret, dataDirectory: config.dataDirectory, logger: logger)
    let authority = await TokenAuthority(secret: secret)
    let deadline = DatabaseDeadline(config.databaseTimeout)
    var poolConfiguration = database.clientConfiguration()
    poolConfiguration.options.maximumConnections = 20
    deadline.apply(to: &poolConfiguration.options)
    // no keep-alive pings: a ping is a query like any other, never answered when sent on a connection the database has
    // just closed, and the pool's run() (so a graceful shutdown) would wait for it; idle connections are retired by
    // the pool's idle timeout instead, and connecting is bounded by its connect timeout
    poolConfiguration.options.keepAliveBehavior = nil
    let client = PostgresClient(configuration: poolConfiguration, backgroundLogger: logger)
    try await Migrator(directory: try Migrator.locateDirectory()).migrate(database, logger: logger)
    // the columns of the published tables, so that a filter on a column that does not exist is refused at join
    var policy = SubscriptionPolicy.standard
    for table in config.publicTables where policy.tables[table] == nil { policy.tables[table] = .init(publicColumns: nil, ownerColumn: nil) }
    let tableNames = Array(policy.tables.keys)
    policy.columns = try await database.withConnection(logger: logger) { connection in
        var columns: [String: [String]] = [:]
        let rows = try await connection.query(
            "select table_schema || '.' || table_name, column_name::text from information_schema.columns where table_schema || '.' || table_name = any(\(tableNames)) order by ordinal_position",
            logger: logger)
        for try await (table, column) in rows.decode((String, String).self) { columns[table, default: []].append(column) }
        return columns
    }
    let metrics = MetricsRegistry()
    let coalescing = RealtimeHub.Coalescing(
        interval: .milliseconds(config.coalesceMilliseconds), timer: EventLoopCoalescingTimer(eventLoop: ChangeFeed.eventLoopGroup.next()))
    let hub = RealtimeHub(
        policy: policy, metrics: HubMetrics(registry: metrics), broadcastsPerSecond: config.limits.broadcastsPerSecondPerTopic,
        coalescing: coalescing)
    var gatewayConfiguration = RealtimeGateway.Configuration()
    gatewayConfiguration.maxFrameBytes = config.limits.maxFrameBytes
    gatewayConfiguration.maxConnectionsPerIP = config.limits.maxConnectionsPerIP
    // one budget of TCP connections, HTTP and WebSocket together, below the open-file limit: running out of descriptors
    // aborts the process (libdispatch's worker-pool monitor traps when it cannot open /proc/<tid>/stat), so
    // MARQUEE_MAX_CONNECTIONS may lower the budget but not raise it past what the limit leaves
    let descriptors = FileLimit.raiseToMaximum()
    let safeConnections = descriptors.map(FileLimit.socketBudget(descriptors:)) ?? Int.max
    var maxConnections = config.limits.maxConnections ?? safeConnections
    if maxConnections > safeConnections {
        logger.warning(
            "MARQUEE_MAX_CONNECTIONS is above what the open-file limit leaves for connections; raise the limit (ulimit -n, LimitNOFILE) to hold more",
            metadata: ["asked": "\(maxConnections)", "max_connections": "\(safeConnections)", "open_files": "\(descriptors ?? 0)"])
        maxConnections = safeConnections
    }
    logger.info(
        "connection limit",
        metadata: [
            "max_connections": "\(maxConnections)", "open_files": "\(descriptors.map { String($0) } ?? "unknown")",
            "per_ip": "\(config.limits.maxConnectionsPerIP)",
        ])
    gatewayConfiguration.maxConnections = maxConnections
    gatewayConfiguration.maxConnectionsPerUser = config.limits.maxConnectionsPerUser
    gatewayConfiguration.limits.maxChannels = config.limits.maxChannelsPerConnection
    gatewayConfiguration.limits.joinsPerSecond = config.limits.joinsPerSecond
    gatewayConfiguration.limits.messagesPerSecond = config.limits.messagesPerSecond
    gatewayConfiguration.limits.maxBroadcastBytes = config.limits.maxBroadcastBytes
    gatewayConfiguration.limits.maxPresenceBytes = config.limits.maxPresenceBytes
    gatewayConfiguration.inboundBytesPerSecond = config.limits.inboundBytesPerSecond
    gatewayConfiguration.outboxBytes = config.limits.outboxBytes
    let feedStatus = ChangeFeedStatus(registry: metrics)
    let analytics = EventAnalytics(registry: metrics)
    let dependencies = AppDependencies(
        config: config, database: database, client: client, authority: authority,
        events: PostgresEventRepository(client: client, deadline: deadline, logger: logger),
        reservations: PostgresReservationRepository(client: client, deadline: deadline, logger: logger),
        hub: hub, feedStatus: feedStatus,
        gateway: RealtimeGateway(
            hub: hub, authority: authority, snapshots: PostgresSnapshotSource(client: client, deadline: deadline, logger: logger),
            broadcasts: PostgresBroadcastStore(client: client, deadline: deadline, logger: logger), analytics: analytics,
            configuration: gatewayConfiguration, logger: logger),
        metrics: metrics, webMetrics: WebMetrics(registry: metrics), analytics: analytics, httpMetrics: HTTPMetrics(registry: metrics),
        databaseDeadline: deadline)

    if !config.limits.trustedProxies.isEmpty {
        logger.info("trusted proxies", metadata: ["blocks": "\(config.limits.trustedProxies)"])
    }
    await FileLimit.prepareRuntimeTimers()
    let router = buildRouter(dependencies)
    var app = Application(
        router: router,
        server: RealtimeServerChannel.builder(
            gateway: dependencies.gateway, http1: HTTP1Channel.Configuration(idleTimeout: TimeAmount(config.limits.httpIdleTimeout)),
            connections: RealtimeServerChannel.Connections(
                budget: ConnectionBudget(
                    limits: .init(maxConnections: maxConnections, maxPerAddress: config.limits.maxConnectionsPerIP),
                    metrics: ConnectionMetrics(registry: metrics)),
                trustedProxies: config.limits.trustedProxies, requestHeadTimeout: TimeAmount(config.limits.requestHeadTimeout))),
        // a queue of connections waiting to be accepted deep enough for an on-sale's burst of browsers (the kernel caps
        // it at net.core.somaxconn); Hummingbird's default of 256 drops the rest of a burst until clients retry
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "marquee", backlog: 4096),
        onServerRunning: { [gate = hub.feedGate] channel in
            // ready (`listening on …`) once joins are told Subscribed to PostgreSQL, or after 10 s without a feed
            _ = try? await withDeadline(.seconds(10), "waiting for the change feed") { await gate.waitUntilLive() }
            await onServerRunning(channel)
        },
        logger: logger)
    if let embedded { app.addServices(EmbeddedPostgresService(embedded)) }
    app.addServices(client)
    let slot = ChangeFeed.Configuration.slotName(database: database.database, node: config.nodeName)
    var feedConfiguration = ChangeFeed.Configuration(slotName: slot)
    feedConfiguration.mode = config.changeFeedMode
    feedStatus.setMode(config.changeFeedMode)
    feedConfiguration.deadline = DatabaseDeadline(max(config.databaseTimeout, feedConfiguration.deadline.limit))
    let feed = ChangeFeed(database: database, hub: hub, status: feedStatus, configuration: feedConfiguration, logger: logger)
    try await feed.prepareSlot()
    app.addServices(feed)
    app.addServices(
        HoldSweeper(
            repository: dependencies.reservations, warningSeconds: config.holdWarningSeconds, clock: ContinuousClock(), logger: logger,
            onExpired: { analytics.transition(.expired, count: $0) }))
    let retention = MessageRetention(
        client: client, retentionSeconds: config.messageRetentionSeconds, removed: hub.metrics.prunedMessages, deadline: deadline,
        clock: ContinuousClock(), logger: logger)
    app.addServices(retention)
    return app
}

public func buildRouter(_ dependencies: AppDependencies) -> Router<MarqueeRequestContext> {
    let router = Router(context: MarqueeRequestContext.self)
    router.add(middleware: ClientAddressMiddleware(trustedProxies: dependencies.config.limits.trustedProxies))
    router.add(middleware: HTTPMetricsMiddleware(metrics: dependencies.httpMetrics))
    router.add(middleware: ErrorMiddleware(metrics: dependencies.hub.metrics))
    let auth = Authenticator(authority: dependencies.authority)

    router.get("/healthz") { _, _ in try JSONCoding.response(["status": "ok"]) }
    router.get("/readyz") { _, context in
        var database = "ok"
        do {
            let logger = context.logger
            try await withDeadline(.seconds(1), "checking the database") { try await dependencies.client.query("select 1", logger: logger) }
        } catch {
            database = "unreachable"
        }
        let status = dependencies.feedStatus
        let feed = status.isConnected ? "ok" : "disconnected"
        let ready = database == "ok" && feed == "ok"
        return try JSONCoding.response(
            [
                "status": .string(ready ? "ready" : "not_ready"), "database": .string(database), "change_feed": .string(feed),
                "change_feed_detail": status.readinessDetail(),
            ],
            status: ready ? .ok : .serviceUnavailable)
    }
    MetricsController(dependencies: dependencies).addRoutes(to: router)
    dependencies.gateway.addRoutes(to: router)
    AdminController(dependencies: dependencies, auth: auth).addRoutes(to: router)

    let api = router.group("api")
    let events = api.group("events")
    EventsController(
        events: dependencies.events, auth: auth, analytics: dependencies.analytics, client: dependencies.client, hub: dependencies.hub,
        deadline: dependencies.databaseDeadline
    ).addRoutes(to: events)
    ReservationsController(
        reservations: dependencies.reservations, auth: auth, holdSeconds: dependencies.config.holdSeconds,
        maxQuantity: dependencies.config.maxQuantityPerReservation,
        rateLimiter: UserRateLimiter(perMinute: dependencies.config.limits.reservationsPerMinutePerUser), metrics: dependencies.hub.metrics,
        analytics: dependencies.analytics
    ).addRoutes(events: events, reservations: api.group("reservations"))
    WebController(dependencies: dependencies).addRoutes(to: router)
    return router
}
