import Foundation
import Hummingbird
import MarqueeCore
import PostgresNIO

/// `/api/events`: list, read, create, and the availability snapshot.
struct EventsController<Context: RequestContext>: Sendable {
    let events: any EventRepository
    let auth: Authenticator
    let analytics: EventAnalytics
    let client: PostgresClient
    let hub: RealtimeHub
    let deadline: DatabaseDeadline

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: list)
        group.post(use: create)
        group.get(":id", use: get)
        group.get(":id/availability", use: availability)
        group.get(":id/stats", use: stats)
    }

    /// Product counters for the organizer (service role): page views, subscriptions, reserve attempts by outcome,
    /// sold-out impressions, and reservations by status from the database.
    @Sendable func stats(_ request: Request, context: Context) async throws -> Response {
        try await auth.requireServiceRole(request)
        let id = try eventID(context)
        guard try await events.get(id) != nil else { throw APIError.notFound("event_not_found", "no event \(id)") }
        let client = self.client
        let logger = context.logger
        let (holds, tickets) = try await deadline.run("counting an event's reservations") {
            var holds: [String: Int] = ["reserved": 0, "confirmed": 0, "cancelled": 0, "expired": 0]
            let rows = try await client.query(
                "select status, count(*)::int8, coalesce(sum(quantity), 0)::int8 from tickets where event_id = \(id) group by status",
                logger: logger)
            var tickets: [String: Int] = [:]
            for try await (status, count, quantity) in rows.decode((String, Int, Int).self) {
                holds[status] = count
                tickets[status] = quantity
            }
            return (holds, tickets)
        }
        let counters = analytics.counters(id)
        var attempts: [String: Int] = [:]
        for outcome in EventAnalytics.ReserveOutcome.allCases { attempts[outcome.rawValue] = counters.reserveAttempts[outcome] ?? 0 }
        let finished = (holds["confirmed"] ?? 0) + (holds["expired"] ?? 0)
        let body = StatsBody(
            eventID: id.lowercased, watching: hub.channelsPerEvent()[id] ?? 0, pageViews: counters.pageViews,
            soldOutImpressions: counters.soldOutImpressions,
            subscriptions: counters.subscriptions, reserveAttempts: attempts, reservations: holds, tickets: tickets,
            confirmedShareOfFinishedHolds: finished == 0 ? nil : Double(holds["confirmed"] ?? 0) / Double(finished))
        return try JSONCoding.response(body)
    }

    struct StatsBody: Encodable {
        var eventID: String
        /// Channels joined for this event right now.
        var watching: Int
        var pageViews: Int
        var soldOutImpressions: Int
        var subscriptions: Int
        var reserveAttempts: [String: Int]
        var reservations: [String: Int]
        var tickets: [String: Int]
        var confirmedShareOfFinishedHolds: Double?

        enum CodingKeys: String, CodingKey {
            case eventID = "event_id"
            case watching
            case pageViews = "page_views"
            case soldOutImpressions = "sold_out_impressions"
            case subscriptions
            case reserveAttempts = "reserve_attempts"
            case reservations
            case tickets
            case confirmedShareOfFinishedHolds = "confirmed_share_of_finished_holds"
        }
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        try JSONCoding.response(["events": try await events.list()])
    }

    @Sendable func get(_ request: Request, context: Context) async throws -> Response {
        let id = try eventID(context)
        guard let event = try await events.get(id) else { throw APIError.notFound("event_not_found", "no event \(id)") }
        return try JSONCoding.response(event)
    }

    @Sendable func availability(_ request: Request, context: Context) async throws -> Response {
        let id = try eventID(context)
        guard let snapshot = try await events.availability(id) else { throw APIError.notFound("event_not_found", "no event \(id)") }
        var response = try JSONCoding.response(snapshot)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        try await auth.requireServiceRole(request)
        let event = try await JSONCoding.decodeBody(NewEvent.self, from: request)
        if let problem = event.validationError() { throw problem }
        let created = try await events.create(event)
        var response = try JSONCoding.response(created, status: .created)
        response.headers[.location] = "/api/events/\(created.id.lowercased)"
        return response
    }

    private func eventID(_ context: Context) throws -> UUID {
        try uuidParameter(context, "id", what: "event")
    }
}

func uuidParameter(_ context: some RequestContext, _ name: String, what: String) throws -> UUID {
    let text = context.parameters.get(name) ?? ""
    guard let id = UUID(uuidString: text) else {
        throw APIError.badRequest("invalid_id", "'\(text)' is not a valid \(what) id (a UUID)")
    }
    return id
}
