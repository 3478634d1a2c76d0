import Foundation
import Synchronization

/// A counter safe to bump from any thread.
public final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    public init() {}
    public func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
    public var current: Int { value.load(ordering: .relaxed) }
}

/// Counters and a commit→queue latency histogram of the realtime path.
public final class HubMetrics: Sendable {
    public let connections = Counter()
    public let subscriptions = Counter()
    public let deliveries = Counter()
    public let encodes = Counter()
    public let slowConsumerDrops = Counter()
    public let framesIn = Counter()
    public let badFrames = Counter()
    public let prunedMessages = Counter()
    public let bytesOut = Counter()
    /// Sizes of fan-out batches: how many sockets one change reached (upper bounds of the buckets).
    public static let fanOutBucketBounds: [Int] = [1, 10, 100, 1_000, 10_000, 100_000]
    private let fanOutBuckets = Mutex([Int](repeating: 0, count: fanOutBucketBounds.count + 1))
    private let errorsByReason = Mutex([String: Int]())

    public func recordFanOut(_ sockets: Int) {
        let index = Self.fanOutBucketBounds.firstIndex(where: { sockets <= $0 }) ?? Self.fanOutBucketBounds.count
        fanOutBuckets.withLock { $0[index] += 1 }
    }

    /// Counts an error answered to a client, by its code (`sold_out`, `invalid_token`, `unmatched topic`, …).
    public func error(_ reason: String) {
        errorsByReason.withLock {
            if $0.count < 1_000 || $0[reason] != nil { $0[reason, default: 0] += 1 }
        }
    }
    private let limitHits = Mutex([String: Int]())

    /// Counts a hit of a named limit.
    public func limitHit(_ name: String) { limitHits.withLock { $0[name, default: 0] += 1 } }
    public func limitHitCount(_ name: String) -> Int { limitHits.withLock { $0[name] ?? 0 } }
    /// Upper bounds in milliseconds of the latency buckets.
    public static let latencyBucketsMs: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]
    private let latencyBuckets = Mutex([Int](repeating: 0, count: latencyBucketsMs.count + 1))
    private let latencySum = Mutex((count: 0, sumMs: 0.0))

    public init() {}

    /// Records the time from a change's commit to the moment its frames were queued.
    public func recordCommitLatency(_ committed: Date, now: Date = Date()) {
        let ms = max(0, now.timeIntervalSince(committed) * 1000)
        let index = Self.latencyBucketsMs.firstIndex(where: { ms <= $0 }) ?? Self.latencyBucketsMs.count
        latencyBuckets.withLock { $0[index] += 1 }
        latencySum.withLock {
            $0.count += 1
            $0.sumMs += ms
        }
    }

    /// Approximate latency percentiles (upper bound of the bucket that holds them), in milliseconds.
    public func latencyPercentiles(_ quantiles: [Double]) -> [Double?] {
        let buckets = latencyBuckets.withLock { $0 }
        let total = buckets.reduce(0, +)
        guard total > 0 else { return quantiles.map { _ in nil } }
        return quantiles.map { q in
            var cumulative = 0
            for (index, count) in buckets.enumerated() {
                cumulative += count
                if Double(cumulative) >= q * Double(total) {
                    return index < Self.latencyBucketsMs.count ? Self.latencyBucketsMs[index] : 10_000  // beyond the last bucket
                }
            }
            return nil
        }
    }

    /// Prometheus text lines for these metrics.
    public func prometheusText() -> String {
        var out = ""
        func gauge(_ name: String, _ help: String, _ value: Int, type: String = "gauge") {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        gauge("marquee_realtime_connections", "Open realtime sockets.", connections.current)
        gauge("marquee_realtime_subscriptions", "postgres_changes bindings being delivered.", subscriptions.current)
        gauge("marquee_realtime_deliveries_total", "Frames queued to sockets.", deliveries.current, type: "counter")
        gauge("marquee_realtime_encodes_total", "Change frames encoded (once per topic, ids, format and audience).", encodes.current, type: "counter")
        gauge("marquee_realtime_slow_consumer_drops_total", "Sockets closed because their queue overflowed.", slowConsumerDrops.current, type: "counter")
        gauge("marquee_realtime_frames_in_total", "Frames received from clients.", framesIn.current, type: "counter")
        gauge("marquee_realtime_bad_frames_total", "Frames refused as malformed.", badFrames.current, type: "counter")
        gauge("marquee_broadcast_messages_pruned_total", "Stored broadcast messages removed by the retention job.", prunedMessages.current, type: "counter")
        gauge("marquee_realtime_bytes_out_total", "Bytes of frames queued to sockets.", bytesOut.current, type: "counter")
        out += "# HELP marquee_fanout_sockets How many sockets one change reached.\n# TYPE marquee_fanout_sockets histogram\n"
        let fan = fanOutBuckets.withLock { $0 }
        var fanCumulative = 0
        for (index, bound) in Self.fanOutBucketBounds.enumerated() {
            fanCumulative += fan[index]
            out += "marquee_fanout_sockets_bucket{le=\"\(bound)\"} \(fanCumulative)\n"
        }
        fanCumulative += fan[Self.fanOutBucketBounds.count]
        out += "marquee_fanout_sockets_bucket{le=\"+Inf\"} \(fanCumulative)\nmarquee_fanout_sockets_count \(fanCumulative)\n"
        out += "# HELP marquee_errors_total Errors answered to clients, by reason.\n# TYPE marquee_errors_total counter\n"
        for (reason, count) in errorsByReason.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            let label = reason.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            out += "marquee_errors_total{reason=\"\(label)\"} \(count)\n"
        }
        out += "# HELP marquee_limit_hits_total Requests refused by a limit, by limit.\n# TYPE marquee_limit_hits_total counter\n"
        for (name, count) in limitHits.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            out += "marquee_limit_hits_total{limit=\"\(name)\"} \(count)\n"
        }
        let buckets = latencyBuckets.withLock { $0 }
        let sum = latencySum.withLock { $0 }
        out += "# HELP marquee_commit_to_queue_seconds Time from a change's commit to its frames being queued.\n"
        out += "# TYPE marquee_commit_to_queue_seconds histogram\n"
        var cumulative = 0
        for (index, bound) in Self.latencyBucketsMs.enumerated() {
            cumulative += buckets[index]
            out += "marquee_commit_to_queue_seconds_bucket{le=\"\(bound / 1000)\"} \(cumulative)\n"
        }
        cumulative += buckets[Self.latencyBucketsMs.count]
        out += "marquee_commit_to_queue_seconds_bucket{le=\"+Inf\"} \(cumulative)\n"
        out += "marquee_commit_to_queue_seconds_sum \(sum.sumMs / 1000)\n"
        out += "marquee_commit_to_queue_seconds_count \(sum.count)\n"
        return out
    }
}
