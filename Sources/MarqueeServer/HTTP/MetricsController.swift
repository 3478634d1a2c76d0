import CoreMetrics
import Foundation
import Hummingbird
import MarqueeCore
import NIOCore
import PostgresNIO

/// `GET /metrics`: the server's registry in the Prometheus text format. Gauges that are a question to the database
/// or a count over the hub's index (database up, WAL behind the feed, channels per event) are refreshed per scrape.
struct MetricsController: Sendable {
    let dependencies: AppDependencies
    let databaseUp: Meter
    let walBehind: Meter
    let lastCommitAge: Meter

    init(dependencies: AppDependencies) {
        self.dependencies = dependencies
        let registry = dependencies.metrics
        databaseUp = registry.gauge("marquee_database_up")
        walBehind = registry.gauge("marquee_change_feed_wal_behind_bytes")
        lastCommitAge = registry.gauge("marquee_change_feed_last_commit_age_seconds")
    }

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/metrics") { _, _ in await self.response() }
    }

    func response() async -> Response {
        let text = await scrape()
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Refreshes the scrape-time gauges and renders the registry.
    func scrape() async -> String {
        let status = dependencies.feedStatus
        do {
            let client = dependencies.client
            let current = try await withDeadline(.seconds(1), "reading the WAL position") { () -> String? in
                for try await lsn in try await client.query("select pg_current_wal_lsn()::text").decode(String.self) { return lsn }
                return nil
            }
            databaseUp.set(1.0)
            if let current, let lsn = PgLSN(current), status.lastLSN != .invalid {
                walBehind.set(max(0, Int64(lsn.value) - Int64(status.lastLSN.value)))
            }
        } catch {
            databaseUp.set(0.0)
        }
        if let behind = status.secondsBehind { lastCommitAge.set(behind) }
        dependencies.hub.metrics.setEventChannels(dependencies.hub.channelsPerEvent())
        return dependencies.metrics.text()
    }
}
