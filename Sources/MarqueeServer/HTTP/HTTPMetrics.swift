import CoreMetrics
import Foundation
import Hummingbird
import Synchronization

/// Requests by method, route (the matched path template, never the raw path with its ids) and status, with a
/// latency histogram.
public final class HTTPMetrics: Sendable {
    struct Key: Hashable {
        var method: String
        var route: String
        var status: Int
    }

    let registry: MetricsRegistry
    private let series = Mutex([Key: (count: CoreMetrics.Counter, seconds: CoreMetrics.Timer)]())

    public init(registry: MetricsRegistry = MetricsRegistry()) { self.registry = registry }

    func record(method: String, route: String, status: Int, duration: Duration) {
        let key = Key(method: method, route: route, status: status)
        let found = series.withLock { series -> (count: CoreMetrics.Counter, seconds: CoreMetrics.Timer)? in
            if let found = series[key] { return found }
            if series.count > 5_000 { return nil }  // bounded: routes are templates, so this is never reached in practice
            let labels = [("method", method), ("route", route), ("status", String(status))]
            let made = (registry.counter("marquee_http_requests_total", labels), registry.timer("marquee_http_request_seconds", labels))
            series[key] = made
            return made
        }
        guard let found else { return }
        found.count.increment()
        found.seconds.recordNanoseconds(Int64(duration / .nanoseconds(1)))
    }
}

/// Records every request in `HTTPMetrics`, errors included (with the status they are answered with).
struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: HTTPMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let method = request.method.rawValue
        do {
            let response = try await next(request, context)
            metrics.record(method: method, route: context.endpointPath ?? "unmatched", status: response.status.code, duration: ContinuousClock.now - start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.record(method: method, route: context.endpointPath ?? "unmatched", status: status, duration: ContinuousClock.now - start)
            throw error
        }
    }
}
