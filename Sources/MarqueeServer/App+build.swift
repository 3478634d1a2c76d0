import Foundation
import Hummingbird
import Logging
import MarqueeCore
import NIOCore
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
    var poolConfiguration = database.clientConfiguration()
    poolConfiguration.options.maximumConnections = 20
    let client = PostgresClient(configuration: poolConfiguration, backgroundLogger: logger)
    let dependencies = AppDependencies(
        config: config, database: database, client: client, authority: authority,
        events: PostgresEventRepository(client: client, logger: logger),
        reservations: PostgresReservationRepository(client: client, logger: logger))
    try await Migrator(directory: try Migrator.locateDirectory()).migrate(database, logger: logger)

    let router = buildRouter(dependencies)
    var app = Application(
        router: router,
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "marquee"),
        onServerRunning: onServerRunning,
        logger: logger)
    if let embedded { app.addServices(EmbeddedPostgresService(embedded)) }
    app.addServices(client)
    app.addServices(HoldSweeper(repository: dependencies.reservations, clock: ContinuousClock(), logger: logger))
    return app
}

public func buildRouter(_ dependencies: AppDependencies) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    let auth = Authenticator(authority: dependencies.authority)

    router.get("/healthz") { _, _ in try JSONCoding.response(["status": "ok"]) }
    router.get("/readyz") { _, context in
        do {
            try await dependencies.client.query("select 1", logger: context.logger)
            return try JSONCoding.response(["status": "ready", "database": "ok"])
        } catch {
            return try JSONCoding.response(["status": "not_ready", "database": "unreachable"], status: .serviceUnavailable)
        }
    }

    let api = router.group("api")
    let events = api.group("events")
    EventsController(events: dependencies.events, auth: auth).addRoutes(to: events)
    ReservationsController(
        reservations: dependencies.reservations, auth: auth, holdSeconds: dependencies.config.holdSeconds,
        maxQuantity: dependencies.config.maxQuantityPerReservation
    ).addRoutes(events: events, reservations: api.group("reservations"))
    return router
}
