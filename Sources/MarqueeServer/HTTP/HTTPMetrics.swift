import Foundation
import Hummingbird
import Synchronization

/// Requests by method, route (the matched path template, never the raw path with its ids) and status, with their
/// total latency.
public final class HTTPMetrics: Sendable {
    struct Key: Hashable {
        var method: String
        var route: String
        var status: Int
    }

    private let counts = Mutex([Key: (count: Int, seconds: Double)]())

    public init() {}

    func record(method: String, route: String, status: Int, seconds: Double) {
        counts.withLock { counts in
            if counts.count > 5_000 { return }  // bounded: routes are templates, so this is never reached in practice
            let key = Key(method: method, route: route, status: status)
            let current = counts[key] ?? (0, 0)
            counts[key] = (current.count + 1, current.seconds + seconds)
        }
    }

    public func prometheusText() -> String {
        let snapshot = counts.withLock { $0 }.sorted { ($0.key.route, $0.key.method, $0.key.status) < ($1.key.route, $1.key.method, $1.key.status) }
        var out = "# HELP marquee_http_requests_total HTTP requests by method, route and status.\n# TYPE marquee_http_requests_total counter\n"
        for (key, value) in snapshot {
            out += "marquee_http_requests_total{method=\"\(key.method)\",route=\"\(key.route)\",status=\"\(key.status)\"} \(value.count)\n"
        }
        out += "# HELP marquee_http_request_seconds_sum Time spent answering HTTP requests.\n# TYPE marquee_http_request_seconds_sum counter\n"
        for (key, value) in snapshot {
            out += "marquee_http_request_seconds_sum{method=\"\(key.method)\",route=\"\(key.route)\",status=\"\(key.status)\"} \(value.seconds)\n"
        }
        return out
    }
}

/// Records every request in `HTTPMetrics`, errors included (with the status they are answered with).
struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: HTTPMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        func seconds() -> Double {
            let elapsed = ContinuousClock.now - start
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        let method = request.method.rawValue
        do {
            let response = try await next(request, context)
            metrics.record(method: method, route: context.endpointPath ?? "unmatched", status: response.status.code, seconds: seconds())
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.record(method: method, route: context.endpointPath ?? "unmatched", status: status, seconds: seconds())
            throw error
        }
    }
}
