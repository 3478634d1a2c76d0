import CoreMetrics
import Foundation
import Synchronization

/// The metrics of the realtime path, in the server's registry. The fan-out counts once per change (by the number of
/// sockets it reached), never once per socket; only the commit→send histogram is per delivery, since each socket's
/// write happens on its own.
public final class HubMetrics: Sendable {
    public let registry: MetricsRegistry
    let connections: Meter
    let channels: Meter
    let deliveries: CoreMetrics.Counter
    let encodes: CoreMetrics.Counter
    let slowConsumerDrops: CoreMetrics.Counter
    let framesIn: CoreMetrics.Counter
    let badFrames: CoreMetrics.Counter
    let bytesOut: CoreMetrics.Counter
    public let prunedMessages: CoreMetrics.Counter
    let fanOut: Recorder
    let commitToQueue: CoreMetrics.Timer
    let commitToSend: CoreMetrics.Timer
    private let limitCounters: [String: CoreMetrics.Counter]
    private let subscriptionsByTable = Mutex([String: Meter]())
    private let errorsByReason = Mutex([String: CoreMetrics.Counter]())
    private let eventChannels = Mutex([UUID: Meter]())

    public init(registry: MetricsRegistry = MetricsRegistry()) {
        self.registry = registry
        connections = registry.gauge("marquee_realtime_connections")
        channels = registry.gauge("marquee_realtime_channels")
        deliveries = registry.counter("marquee_realtime_deliveries_total")
        encodes = registry.counter("marquee_realtime_encodes_total")
        slowConsumerDrops = registry.counter("marquee_realtime_slow_consumer_drops_total")
        framesIn = registry.counter("marquee_realtime_frames_in_total")
        badFrames = registry.counter("marquee_realtime_bad_frames_total")
        bytesOut = registry.counter("marquee_realtime_bytes_out_total")
        prunedMessages = registry.counter("marquee_broadcast_messages_pruned_total")
        fanOut = registry.histogram("marquee_fanout_sockets")
        commitToQueue = registry.timer("marquee_commit_to_queue_seconds")
        commitToSend = registry.timer("marquee_commit_to_send_seconds")
        // every limit has a series from the start, so that rate() sees the first hit
        limitCounters = Dictionary(
            uniqueKeysWithValues: LimitName.allCases.map { ($0.rawValue, registry.counter("marquee_limit_hits_total", [("limit", $0.rawValue)])) })
    }

    /// Counts a change that reached `sockets` sockets with `bytes` bytes in all (once per change).
    func recordFanOut(sockets: Int, queued: Int, bytes: Int) {
        fanOut.record(sockets)
        if queued > 0 {
            deliveries.increment(by: queued)
            bytesOut.increment(by: bytes)
        }
    }

    /// Counts an error answered to a client, by its code (`sold_out`, `InvalidJWTToken`, `unmatched topic`, …); at
    /// most 200 distinct reasons get their own series, the rest are counted as `other`.
    public func error(_ reason: String) {
        let counter = errorsByReason.withLock { counters -> CoreMetrics.Counter in
            if let counter = counters[reason] { return counter }
            let key = counters.count < 200 ? reason : "other"
            if let counter = counters[key] { return counter }
            let counter = registry.counter("marquee_errors_total", [("reason", key)])
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    /// Counts a hit of a named limit.
    public func limitHit(_ name: String) {
        (limitCounters[name] ?? registry.counter("marquee_limit_hits_total", [("limit", name)])).increment()
    }

    /// Adds `delta` postgres_changes bindings of `table` ("schema.table").
    func subscriptionsChanged(table: String, by delta: Int) {
        let meter = subscriptionsByTable.withLock { meters -> Meter in
            if let meter = meters[table] { return meter }
            let meter = registry.gauge("marquee_realtime_subscriptions", [("table", table)])
            meters[table] = meter
            return meter
        }
        meter.increment(by: Double(delta))
    }

    /// Records the time from a change's commit to the moment its messages were queued.
    func recordQueued(committed: Date, now: Date = Date()) {
        commitToQueue.recordNanoseconds(Self.nanoseconds(from: committed, to: now))
    }

    /// Records the time from a change's commit to the moment one of its messages was written to a socket.
    public func recordSent(committed: Date, now: Date = Date()) {
        commitToSend.recordNanoseconds(Self.nanoseconds(from: committed, to: now))
    }

    static func nanoseconds(from start: Date, to end: Date) -> Int64 {
        let seconds = end.timeIntervalSince(start)
        return seconds > 0 ? Int64(min(seconds, 1e6) * 1e9) : 0  // a commit "in the future" is clock skew: counted as 0
    }

    /// Sets `marquee_event_channels{event_id}` to these counts; events no longer watched lose their series.
    func setEventChannels(_ counts: [UUID: Int]) {
        eventChannels.withLock { meters in
            for (event, meter) in meters where counts[event] == nil {
                meter.destroy()
                meters[event] = nil
            }
            for (event, count) in counts {
                let meter =
                    meters[event] ?? registry.gauge("marquee_event_channels", [("event_id", event.uuidString.lowercased())])
                meters[event] = meter
                meter.set(count)
            }
        }
    }
}
