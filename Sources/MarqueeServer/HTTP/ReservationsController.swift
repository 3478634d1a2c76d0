import Foundation
import HTTPTypes
import Hummingbird
import MarqueeCore
import Synchronization

/// Reservations: create a hold (with an Idempotency-Key), confirm it, cancel it.
struct ReservationsController<Context: RequestContext>: Sendable {
    struct CreateBody: Decodable {
        var ticketTypeID: UUID
        var quantity: Int
        var holderEmail: String?

        enum CodingKeys: String, CodingKey {
            case quantity
            case ticketTypeID = "ticket_type_id"
            case holderEmail = "holder_email"
        }
    }

    let reservations: any ReservationRepository
    let auth: Authenticator
    let holdSeconds: Int
    let maxQuantity: Int
    let rateLimiter: UserRateLimiter
    let metrics: HubMetrics
    let analytics: EventAnalytics

    func addRoutes(events: RouterGroup<Context>, reservations group: RouterGroup<Context>) {
        events.post(":id/reservations", use: create)
        group.post(":id/confirm", use: confirm)
        group.post(":id/cancel", use: cancel)
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let user = try await auth.user(request)
        let eventForStats = UUID(uuidString: context.parameters.get("id") ?? "")
        guard rateLimiter.allow(user.id) else {
            metrics.limitHit(LimitName.reservations.rawValue)
            if rateLimiter.logThrottle.shouldLog(user.id) {
                context.logger.warning(
                    "limit reached", metadata: ["limit": "\(LimitName.reservations.rawValue)", "client": "\(LogText.escape("user:\(user.id)"))"])
            }
            if let eventForStats { analytics.reserveAttempt(eventForStats, outcome: .rateLimited) }
            throw APIError(
                .tooManyRequests, "rate_limited", "too many reservation attempts; wait a little and try again")
        }
        let eventID = try uuidParameter(context, "id", what: "event")
        guard let key = request.headers[HTTPField.Name("Idempotency-Key")!]?.trimmingCharacters(in: .whitespaces), !key.isEmpty else {
            throw APIError.badRequest(
                "missing_idempotency_key", "send an Idempotency-Key header (a fresh random string per reservation, reused only for retries)")
        }
        guard key.utf8.count <= 200 else { throw APIError.badRequest("invalid_idempotency_key", "the Idempotency-Key must be at most 200 bytes") }
        let body = try await JSONCoding.decodeBody(CreateBody.self, from: request)
        guard body.quantity >= 1 else { throw APIError.badRequest("invalid_quantity", "'quantity' must be at least 1") }
        guard body.quantity <= maxQuantity else {
            throw APIError.badRequest("quantity_too_large", "'quantity' must be at most \(maxQuantity) per reservation")
        }
        if let email = body.holderEmail, email.count > 320 || !email.contains("@") {
            throw APIError.badRequest("invalid_field", "'holder_email' is not an email address")
        }
        let result: (reservation: Reservation, created: Bool)
        do {
            result = try await reservations.reserve(
                ReservationRequest(
                    userID: user.id, eventID: eventID, ticketTypeID: body.ticketTypeID, quantity: body.quantity,
                    holderEmail: body.holderEmail, idempotencyKey: key, holdSeconds: holdSeconds))
        } catch {
            let code = DatabaseErrorMapping.apiError(for: error)?.code ?? (error as? APIError)?.code
            let outcome = code.flatMap(EventAnalytics.ReserveOutcome.init(rawValue:)) ?? .failed
            analytics.reserveAttempt(eventID, outcome: outcome == .created ? .failed : outcome)
            throw error
        }
        analytics.reserveAttempt(eventID, outcome: result.created ? .created : .replayed)
        return try JSONCoding.response(result.reservation, status: result.created ? .created : .ok)
    }

    @Sendable func confirm(_ request: Request, context: Context) async throws -> Response {
        let (id, actor) = try await target(request, context)
        let reservation = try await reservations.confirm(id, by: actor)
        analytics.transition(.confirmed)
        return try JSONCoding.response(reservation)
    }

    @Sendable func cancel(_ request: Request, context: Context) async throws -> Response {
        let (id, actor) = try await target(request, context)
        let reservation = try await reservations.cancel(id, by: actor)
        analytics.transition(.cancelled)
        return try JSONCoding.response(reservation)
    }

    /// The reservation id and who acts on it: the user, or nil for the service role (which may act on any).
    private func target(_ request: Request, _ context: Context) async throws -> (UUID, String?) {
        let claims = try await auth.claims(request)
        let id = try uuidParameter(context, "id", what: "reservation")
        if claims.role == .serviceRole { return (id, nil) }
        guard let sub = claims.sub, !sub.isEmpty, claims.role != .anon else {
            throw APIError(.unauthorized, "login_required", "this needs the token of the user who made the reservation")
        }
        return (id, sub)
    }
}

/// Per-user token buckets for the reservations API (bounded: forgets idle users past 100 000 entries).
final class UserRateLimiter: Sendable {
    let perMinute: Double
    let logThrottle = LogThrottle(interval: 10)
    private let buckets = Mutex([String: TokenBucket]())

    init(perMinute: Double) { self.perMinute = perMinute }

    func allow(_ user: String, now: Double = ProcessInfo.processInfo.systemUptime) -> Bool {
        buckets.withLock { buckets in
            if buckets.count > 100_000 { buckets.removeAll() }
            var bucket = buckets[user] ?? TokenBucket(rate: perMinute / 60, burst: max(1, perMinute / 3))
            let allowed = bucket.take(now: now)
            buckets[user] = bucket
            return allowed
        }
    }
}
