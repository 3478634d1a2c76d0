import CoreMetrics

/// The connection budget's series (fixed labels only): open connections, refusals by reason, sheddings, request-head
/// timeouts and malformed requests by the status they were answered with.
public final class ConnectionMetrics: Sendable {
    let open: Meter
    let refusedPerAddress: CoreMetrics.Counter
    let refusedFull: CoreMetrics.Counter
    let shed: CoreMetrics.Counter
    let headTimeouts: CoreMetrics.Counter
    private let malformed: [Int: CoreMetrics.Counter]

    /// The statuses a malformed request can be answered with.
    static let malformedStatuses = [400, 408, 414, 431, 501]

    public init(registry: MetricsRegistry) {
        open = registry.gauge("marquee_connections_open")
        refusedPerAddress = registry.counter("marquee_connections_refused_total", [("reason", "per_address")])
        refusedFull = registry.counter("marquee_connections_refused_total", [("reason", "server_full")])
        shed = registry.counter("marquee_connections_shed_total")
        headTimeouts = registry.counter("marquee_connections_head_timeouts_total")
        malformed = Dictionary(
            uniqueKeysWithValues: Self.malformedStatuses.map {
                ($0, registry.counter("marquee_http_malformed_requests_total", [("status", "\($0)")]))
            })
    }

    func malformedRequest(status: Int) { malformed[status]?.increment() }
}
