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

    private let events = Mutex([UUID: Counters]())
    /// Bounded: counters of at most this many events are kept (the oldest are dropped first when full).
    let capacity = 10_000

    public init() {}

    private func update(_ event: UUID, _ change: (inout Counters) -> Void) {
        events.withLock { events in
            if events[event] == nil && events.count >= capacity, let victim = events.keys.first { events[victim] = nil }
            change(&events[event, default: Counters()])
        }
    }

    /// An event page was served; `soldOutTypes` of its ticket types were shown as sold out.
    public func pageView(_ event: UUID, soldOutTypes: Int) {
        update(event) {
            $0.pageViews += 1
            $0.soldOutImpressions += soldOutTypes
        }
    }

    public func subscribed(_ event: UUID) { update(event) { $0.subscriptions += 1 } }

    public func reserveAttempt(_ event: UUID, outcome: ReserveOutcome) { update(event) { $0.reserveAttempts[outcome, default: 0] += 1 } }

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

    /// Totals over all events, for /metrics.
    public func prometheusText() -> String {
        let all = events.withLock { Array($0.values) }
        var attempts: [ReserveOutcome: Int] = [:]
        for counters in all { for (outcome, count) in counters.reserveAttempts { attempts[outcome, default: 0] += count } }
        var out = "# HELP marquee_event_page_views_total Event pages served.\n# TYPE marquee_event_page_views_total counter\n"
        out += "marquee_event_page_views_total \(all.reduce(0) { $0 + $1.pageViews })\n"
        out += "# HELP marquee_sold_out_impressions_total Sold-out ticket types shown on served event pages.\n"
        out += "# TYPE marquee_sold_out_impressions_total counter\n"
        out += "marquee_sold_out_impressions_total \(all.reduce(0) { $0 + $1.soldOutImpressions })\n"
        out += "# HELP marquee_event_subscriptions_total Realtime channels joined for an event.\n# TYPE marquee_event_subscriptions_total counter\n"
        out += "marquee_event_subscriptions_total \(all.reduce(0) { $0 + $1.subscriptions })\n"
        out += "# HELP marquee_reservations_total Reservation attempts by outcome.\n# TYPE marquee_reservations_total counter\n"
        for outcome in ReserveOutcome.allCases {
            out += "marquee_reservations_total{outcome=\"\(outcome.rawValue)\"} \(attempts[outcome] ?? 0)\n"
        }
        return out
    }
}
