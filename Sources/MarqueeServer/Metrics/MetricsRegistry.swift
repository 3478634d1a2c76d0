import CoreMetrics
import Foundation
import Prometheus
import Synchronization

/// The metrics of one server: a Prometheus registry owned by this application instance (never the process-wide
/// `MetricsSystem`, so several servers in one process, as in the tests, keep their numbers apart), and the
/// swift-metrics factory that writes into it. Every metric is created through swift-metrics with `factory:`.
public final class MetricsRegistry: Sendable {
    public let prometheus: PrometheusCollectorRegistry
    public let factory: RegistryMetricsFactory

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.prometheus = registry
        self.factory = RegistryMetricsFactory(registry: registry)
    }

    public func counter(_ name: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: name, dimensions: dimensions, factory: factory)
    }

    public func gauge(_ name: String, _ dimensions: [(String, String)] = []) -> Meter {
        Meter(label: name, dimensions: dimensions, factory: factory)
    }

    /// A histogram of durations, with the buckets `MetricCatalog` gives the name.
    public func timer(_ name: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: name, dimensions: dimensions, factory: factory)
    }

    /// A histogram of values, with the buckets `MetricCatalog` gives the name.
    public func histogram(_ name: String, _ dimensions: [(String, String)] = []) -> Recorder {
        Recorder(label: name, dimensions: dimensions, aggregate: true, factory: factory)
    }

    /// The whole registry in the Prometheus text format.
    public func text() -> String { prometheus.emitToString() }

    /// The value of one series in the exposition (`name` with exactly these labels, in any order); nil when absent.
    /// For tests and tools, not for hot paths.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        PrometheusText.samples(text()).first { $0.name == name && $0.labels == labels }?.value
    }
}

/// Creates swift-metrics handlers in one `PrometheusCollectorRegistry`, with the HELP text and buckets that
/// `MetricCatalog` lists for each name.
public struct RegistryMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: MetricCatalog.help(label))
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: MetricCatalog.help(label))
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: MetricCatalog.help(label)) }
        return registry.makeValueHistogram(
            name: label, labels: dimensions, buckets: MetricCatalog.valueBuckets[label] ?? [1, 10, 100, 1000], help: MetricCatalog.help(label))
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: MetricCatalog.help(label))
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(
            name: label, labels: dimensions, buckets: MetricCatalog.durationBuckets[label] ?? MetricCatalog.latencyBuckets,
            help: MetricCatalog.help(label))
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        if let histogram = handler as? ValueHistogram { registry.unregisterValueHistogram(histogram) }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
    }
}

/// Every metric Marquee exports: its name, HELP text and, for histograms, buckets. docs/operations.md describes each
/// (a test checks that it lists them all).
public enum MetricCatalog {
    /// 1, 2, 5, 10, 20, 50, 100, 200, 500 ms, 1 s, 5 s.
    public static let latencyBuckets: [Duration] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000].map { .milliseconds($0) }

    public static let entries: [(name: String, help: String)] = [
        // realtime
        ("marquee_realtime_connections", "Open realtime sockets."),
        ("marquee_realtime_channels", "Joined channels on open sockets."),
        ("marquee_realtime_subscriptions", "postgres_changes bindings being delivered, by table."),
        ("marquee_realtime_frames_in_total", "Messages received from clients."),
        ("marquee_realtime_deliveries_total", "Messages queued to sockets (changes, broadcasts, presence diffs)."),
        ("marquee_realtime_bytes_out_total", "Bytes of messages queued to sockets."),
        ("marquee_realtime_encodes_total", "Change messages encoded (once per topic, ids, format and audience)."),
        ("marquee_realtime_slow_consumer_drops_total", "Sockets closed because their queue overflowed."),
        ("marquee_realtime_bad_frames_total", "Frames refused as malformed."),
        ("marquee_fanout_sockets", "How many sockets one change reached."),
        ("marquee_commit_to_queue_seconds", "Time from a change's commit to its messages being queued, per change."),
        ("marquee_commit_to_send_seconds", "Time from a change's commit to its message being written to a socket, per delivery."),
        ("marquee_errors_total", "Errors answered to realtime clients, by reason."),
        ("marquee_limit_hits_total", "Requests refused by a limit, by limit."),
        ("marquee_broadcast_messages_pruned_total", "Stored broadcast messages removed by the retention job."),
        ("marquee_event_channels", "Joined channels per event (by event_id filter or event topic)."),
        // change feed and database
        ("marquee_change_feed_connected", "Whether the change feed is reading its slot."),
        ("marquee_change_feed_changes_total", "Row changes handed to the router."),
        ("marquee_change_feed_lag_seconds", "How far behind the commit the feed read its newest change (0 when caught up)."),
        ("marquee_change_feed_wal_behind_bytes", "WAL written since the last position the feed handed on."),
        ("marquee_change_feed_last_commit_age_seconds", "Age of the newest change handed on."),
        ("marquee_change_feed_streaming", "Whether the change feed streams over the replication protocol (1) or polls over SQL (0)."),
        ("marquee_change_feed_reconnects_total", "Times the change feed lost its connection and connected again."),
        ("marquee_change_feed_slot_recreated_total", "Times the change feed found its slot gone and created it again (clients told to resync)."),
        ("marquee_change_feed_flushed_lsn", "The WAL position the feed handed on (streaming: reported to PostgreSQL as flushed), as a number."),
        ("marquee_change_feed_lag_bytes", "Streaming: WAL bytes between what PostgreSQL sent and what the feed handed on."),
        ("marquee_database_up", "Whether the database answered within a second."),
        // connections (HTTP and WebSocket)
        ("marquee_connections_open", "Open TCP connections, HTTP and WebSocket together."),
        ("marquee_connections_refused_total", "Connections closed at accept, by reason (per_address, server_full)."),
        ("marquee_connections_shed_total", "Idle HTTP connections closed to make room for new ones."),
        ("marquee_connections_head_timeouts_total", "Connections closed because their first request head did not arrive in time."),
        ("marquee_http_malformed_requests_total", "Requests that could not be parsed, by the status they were answered with."),
        // HTTP and pages
        ("marquee_http_requests_total", "HTTP requests by method, route and status."),
        ("marquee_http_request_seconds", "Time spent answering HTTP requests, by method, route and status."),
        ("marquee_client_errors_total", "Errors reported by the web pages (POST /api/client-errors)."),
        // product analytics
        ("marquee_event_page_views_total", "Event pages served."),
        ("marquee_sold_out_impressions_total", "Sold-out ticket types shown on served event pages."),
        ("marquee_event_subscriptions_total", "Realtime channels joined for an event."),
        ("marquee_reservations_total", "Reservation attempts and later transitions, by outcome."),
    ]

    static let helpByName: [String: String] = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.help) })
    static func help(_ name: String) -> String { helpByName[name] ?? "" }

    static let durationBuckets: [String: [Duration]] = [
        "marquee_commit_to_queue_seconds": latencyBuckets,
        "marquee_commit_to_send_seconds": latencyBuckets,
        "marquee_http_request_seconds": [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500].map { .milliseconds($0) },
    ]
    static let valueBuckets: [String: [Double]] = [
        "marquee_fanout_sockets": [1, 10, 100, 1_000, 10_000, 100_000]
    ]
}

/// Reads the Prometheus text format (enough for the exposition above: no timestamps, escaped label values).
public enum PrometheusText {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public static func samples(_ text: String) -> [Sample] {
        var result: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else {
                result.append(Sample(name: String(series), labels: [:], value: value))
                continue
            }
            var labels: [String: String] = [:]
            var rest = series[series.index(after: brace)...].dropLast()  // without the closing brace
            while let equals = rest.firstIndex(of: "=") {
                let key = rest[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
                var index = rest.index(equals, offsetBy: 2)  // past ="
                var text = ""
                while index < rest.endIndex, rest[index] != "\"" {
                    if rest[index] == "\\", rest.index(after: index) < rest.endIndex {
                        index = rest.index(after: index)
                        text.append(rest[index] == "n" ? "\n" : rest[index])
                    } else {
                        text.append(rest[index])
                    }
                    index = rest.index(after: index)
                }
                labels[key] = text
                rest = index < rest.endIndex ? rest[rest.index(after: index)...] : rest[rest.endIndex...]
            }
            result.append(Sample(name: String(series[..<brace]), labels: labels, value: value))
        }
        return result
    }
}
