import Foundation
import Logging
import MarqueeCore
import PostgresNIO

/// A request for a hold.
public struct ReservationRequest: Sendable {
    public var userID: String
    public var eventID: UUID
    public var ticketTypeID: UUID
    public var quantity: Int
    public var holderEmail: String?
    public var idempotencyKey: String
    public var holdSeconds: Int
}

/// Reservations. Every operation is one statement (or one transaction); the triggers move the counts.
public protocol ReservationRepository: Sendable {
    /// Creates a hold, or returns the one made earlier with the same idempotency key (`created == false`).
    func reserve(_ request: ReservationRequest) async throws -> (reservation: Reservation, created: Bool)
    func confirm(_ id: UUID, by userID: String?) async throws -> Reservation
    func cancel(_ id: UUID, by userID: String?) async throws -> Reservation
    /// Expires holds whose time is up; returns how many.
    func expireHolds() async throws -> Int
    /// Marks holds that run out within `seconds` so that their owners are warned (once); returns how many.
    func warnExpiringHolds(within seconds: Int) async throws -> Int
}

public struct PostgresReservationRepository: ReservationRepository {
    let client: PostgresClient
    let logger: Logger
    let deadline: DatabaseDeadline

    public init(client: PostgresClient, deadline: DatabaseDeadline = DatabaseDeadline(), logger: Logger) {
        self.client = client
        self.deadline = deadline
        self.logger = logger
    }

    typealias Row = (UUID, UUID, UUID, Int, String, Date?)

    static func reservation(_ row: Row) -> Reservation {
        Reservation(
            id: row.0, eventID: row.1, ticketTypeID: row.2, quantity: row.3, status: ReservationStatus(rawValue: row.4) ?? .reserved,
            holdExpiresAt: row.5)
    }

    public func reserve(_ request: ReservationRequest) async throws -> (reservation: Reservation, created: Bool) {
        try await deadline.run("reserving") { try await reserving(request) }
    }

    private func reserving(_ request: ReservationRequest) async throws -> (reservation: Reservation, created: Bool) {
        // The insert is the atomic step: the count trigger takes the seats or raises sold_out, and a key used
        // before makes ON CONFLICT skip the row (and its trigger) entirely.
        let inserted = try await client.query(
            """
            insert into tickets (event_id, event_ticket_id, user_id, holder_email, quantity, status, hold_expires_at, idempotency_key)
            values (\(request.eventID), \(request.ticketTypeID), \(request.userID), \(request.holderEmail), \(request.quantity),
                    'reserved', now() + make_interval(secs => \(request.holdSeconds)), \(request.idempotencyKey))
            on conflict (user_id, idempotency_key) do nothing
            returning id, event_id, event_ticket_id, quantity, status, hold_expires_at
            """, logger: logger)
        for try await row in inserted.decode(Row.self) {
            return (Self.reservation(row), true)
        }
        // The key was used before (perhaps by a request that committed while this one waited): a new statement
        // sees it.
        let existing = try await client.query(
            """
            select id, event_id, event_ticket_id, quantity, status, hold_expires_at
              from tickets where user_id = \(request.userID) and idempotency_key = \(request.idempotencyKey)
            """, logger: logger)
        for try await row in existing.decode(Row.self) {
            let reservation = Self.reservation(row)
            guard reservation.eventID == request.eventID, reservation.ticketTypeID == request.ticketTypeID,
                reservation.quantity == request.quantity
            else {
                throw APIError(
                    .unprocessableContent, "idempotency_key_reused",
                    "this Idempotency-Key was already used for a different reservation; use a new key for a new request")
            }
            return (reservation, false)
        }
        throw APIError(.internalServerError, "internal_error", "the reservation was neither created nor found")
    }

    public func confirm(_ id: UUID, by userID: String?) async throws -> Reservation {
        try await transition(id, to: .confirmed, by: userID)
    }

    public func cancel(_ id: UUID, by userID: String?) async throws -> Reservation {
        try await transition(id, to: .cancelled, by: userID)
    }

    /// Moves a reservation to `status` in one statement; the owner check is part of its WHERE clause.
    /// `userID == nil` acts for the service role.
    private func transition(_ id: UUID, to status: ReservationStatus, by userID: String?) async throws -> Reservation {
        try await deadline.run("moving a reservation to \(status.rawValue)") { try await moving(id, to: status, by: userID) }
    }

    private func moving(_ id: UUID, to status: ReservationStatus, by userID: String?) async throws -> Reservation {
        let rows = try await client.query(
            """
            update tickets set status = \(status.rawValue)
             where id = \(id) and (\(userID)::text is null or user_id = \(userID))
            returning id, event_id, event_ticket_id, quantity, status, hold_expires_at
            """, logger: logger)
        for try await row in rows.decode(Row.self) {
            return Self.reservation(row)
        }
        let exists = try await client.query("select 1 from tickets where id = \(id)", logger: logger)
        for try await _ in exists {
            throw APIError(.forbidden, "not_owner", "only the person who made this reservation may change it")
        }
        throw APIError.notFound("reservation_not_found", "no reservation \(id)")
    }

    public func warnExpiringHolds(within seconds: Int) async throws -> Int {
        try await count("warning of expiring holds", "select warn_expiring_holds(\(seconds)::int4)")
    }

    public func expireHolds() async throws -> Int {
        try await count("expiring holds", "select expire_holds()")
    }

    /// Runs a function that returns how many rows it changed.
    private func count(_ what: String, _ query: PostgresQuery) async throws -> Int {
        try await deadline.run(what) {
            let rows = try await client.query(query, logger: logger)
            var count = 0
            for try await value in rows.decode(Int.self) { count = value }
            return count
        }
    }
}
