import Foundation
import Hummingbird
import MarqueeCore

/// `GET /admin` (the live dashboard page) and `GET /api/admin/summary` (its data, service role only).
struct AdminController: Sendable {
    let dependencies: AppDependencies
    let auth: Authenticator

    struct Summary: Encodable {
        struct Event: Encodable {
            var eventID: String
            var name: String?
            var channels: Int
            enum CodingKeys: String, CodingKey {
                case eventID = "event_id"
                case name, channels
            }
        }

        var connections: Int
        var subscriptions: Int
        var deliveriesTotal: Int
        var framesInTotal: Int
        var slowConsumerDrops: Int
        var latencyMs: [String: Double?]
        var feed: [String: String]
        var events: [Event]

        enum CodingKeys: String, CodingKey {
            case connections, subscriptions, feed, events
            case deliveriesTotal = "deliveries_total"
            case framesInTotal = "frames_in_total"
            case slowConsumerDrops = "slow_consumer_drops_total"
            case latencyMs = "commit_to_queue_ms"
        }
    }

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/admin") { request, _ in try WebController(dependencies: dependencies).page("admin.html", request: request) }
        router.get("/api/admin/summary") { request, _ in try await self.summary(request) }
    }

    func summary(_ request: Request) async throws -> Response {
        try await auth.requireServiceRole(request)
        let hub = dependencies.hub
        let metrics = hub.metrics
        let percentiles = metrics.latencyPercentiles([0.5, 0.9, 0.99])
        let perEvent = hub.channelsPerEvent().sorted { $0.value > $1.value }.prefix(50)
        let names = Dictionary(
            uniqueKeysWithValues: ((try? await dependencies.events.list()) ?? []).map { ($0.id, $0.name) })
        let status = dependencies.feedStatus
        let summary = Summary(
            connections: hub.connectionCount, subscriptions: hub.subscriptionCount, deliveriesTotal: metrics.deliveries.current,
            framesInTotal: metrics.framesIn.current, slowConsumerDrops: metrics.slowConsumerDrops.current,
            latencyMs: ["p50": percentiles[0], "p90": percentiles[1], "p99": percentiles[2]],
            feed: [
                "connected": status.isConnected ? "yes" : "no", "last_lsn": status.lastLSN.description,
                "changes_total": String(status.changesDelivered),
                "last_commit_age_seconds": status.secondsBehind.map { String(format: "%.1f", $0) } ?? "none yet",
            ],
            events: perEvent.map { Summary.Event(eventID: $0.key.lowercased, name: names[$0.key], channels: $0.value) })
        var response = try JSONCoding.response(summary)
        response.headers[.cacheControl] = "no-store"
        return response
    }
}
