import CoreMetrics
import Foundation
import MarqueeCore
import Synchronization

/// Privacy-preserving product counters per event: counts only, no user ids, addresses or e-mails, kept in memory
/// (they restart at zero with the server; holds confirmed vs expired come from the database).
public final class EventAnalytics: Sendable {
    public enum ReserveOutcome: String, Sendable, CaseIterable {
        case created, replayed, soldOut = "sold_out", insufficient = "insufficient_availability", perUserLimit = "per_user_limit"
        case rateLimited = "rate_limited", failed
    }

    struct Counters: Sendable {
        var pageViews = 0
        var soldOutImpressions = 0
        var subscriptions = 0
        var reserveAttempts: [ReserveOutcome: Int] = [:]
    }

    /// What became of a hold after it was made.
    public enum Transition: String, Sendable, CaseIterable {
        case confirmed, cancelled, expired
    }

    private let events = Mutex([UUID: Counters]())
    /// Bounded: counters of at most this many events are kept (the oldest are dropped first when full).
    let capacity = 10_000
    private let pageViews: CoreMetrics.Counter
    private let soldOutImpressions: CoreMetrics.Counter
    private let subscriptions: CoreMetrics.Counter
    private let outcomes: [String: CoreMetrics.Counter]

    /// Totals over all events go to `registry` (per-event numbers only to the organizer's stats, never to /metrics).
    public init(registry: MetricsRegistry = MetricsRegistry()) {
        pageViews = registry.counter("marquee_event_page_views_total")
        soldOutImpressions = registry.counter("marquee_sold_out_impressions_total")
        subscriptions = registry.counter("marquee_event_subscriptions_total")
        let names = ReserveOutcome.allCases.map(\.rawValue) + Transition.allCases.map(\.rawValue)
        outcomes = Dictionary(uniqueKeysWithValues: names.map { ($0, registry.counter("marquee_reservations_total", [("outcome", $0)])) })
    }

    private func update(_ event: UUID, _ change: (inout Counters) -> Void) {
        events.withLock { events in
            if events[event] == nil && events.count >= capacity, let victim = events.keys.first { events[victim] = nil }
            change(&events[event, default: Counters()])
        }
    }

    /// An event page was served; `soldOutTypes` of its ticket types were shown as sold out.
    public func pageView(_ event: UUID, soldOutTypes: Int) {
        pageViews.increment()
        if soldOutTypes > 0 { soldOutImpressions.increment(by: soldOutTypes) }
        update(event) {
            $0.pageViews += 1
            $0.soldOutImpressions += soldOutTypes
        }
    }

    public func subscribed(_ event: UUID) {
        subscriptions.increment()
        update(event) { $0.subscriptions += 1 }
    }

    public func reserveAttempt(_ event: UUID, outcome: ReserveOutcome) {
        outcomes[outcome.rawValue]?.increment()
        update(event) { $0.reserveAttempts[outcome, default: 0] += 1 }
    }

    /// Holds that were confirmed, cancelled or expired (the database has them per event; this is the total).
    public func transition(_ transition: Transition, count: Int = 1) {
        if count > 0 { outcomes[transition.rawValue]?.increment(by: count) }
    }

    func counters(_ event: UUID) -> Counters { events.withLock { $0[event] ?? Counters() } }

    /// The event a subscription is about: `event_id=eq.<id>` on event_tickets or tickets, or an
    /// `event:<id>:availability` / `event-<id>-…` topic.
    static func eventID(topic: String, subscriptions: [Subscription]) -> UUID? {
        for subscription in subscriptions {
            if let key = subscription.filter.indexKey, key.column == "event_id", let id = UUID(uuidString: key.value) { return id }
        }
        let name = topic.hasPrefix("realtime:") ? String(topic.dropFirst("realtime:".count)) : topic
        for prefix in ["event:", "event-"] where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if rest.count >= 36, let id = UUID(uuidString: String(rest.prefix(36))) { return id }
        }
        return nil
    }
}
