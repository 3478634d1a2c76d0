import Foundation
import Logging
import MarqueeCore
import PostgresNIO

/// A new event with its ticket types, as `POST /api/events` takes it.
public struct NewEvent: Sendable, Codable {
    public struct TicketType: Sendable, Codable {
        public var name: String
        public var priceCents: Int
        public var capacity: Int

        public init(name: String, priceCents: Int, capacity: Int) {
            self.name = name
            self.priceCents = priceCents
            self.capacity = capacity
        }

        enum CodingKeys: String, CodingKey {
            case name, capacity
            case priceCents = "price_cents"
        }
    }

    public var name: String
    public var startsAt: Date
    public var venue: String?
    public var ticketTypes: [TicketType]

    public init(name: String, startsAt: Date, venue: String?, ticketTypes: [TicketType]) {
        self.name = name
        self.startsAt = startsAt
        self.venue = venue
        self.ticketTypes = ticketTypes
    }

    enum CodingKeys: String, CodingKey {
        case name, venue
        case startsAt = "starts_at"
        case ticketTypes = "ticket_types"
    }

    /// The reasons this event cannot be created, if any.
    func validationError() -> APIError? {
        if name.trimmingCharacters(in: .whitespaces).isEmpty { return .badRequest("invalid_field", "'name' must not be empty") }
        if ticketTypes.isEmpty { return .badRequest("invalid_field", "'ticket_types' needs at least one ticket type") }
        var names = Set<String>()
        for (index, type) in ticketTypes.enumerated() {
            if type.name.trimmingCharacters(in: .whitespaces).isEmpty {
                return .badRequest("invalid_field", "'ticket_types[\(index)].name' must not be empty")
            }
            if !names.insert(type.name).inserted {
                return .badRequest("invalid_field", "two ticket types are named '\(type.name)'")
            }
            if type.priceCents < 0 { return .badRequest("invalid_field", "'ticket_types[\(index)].price_cents' must be 0 or more") }
            if type.capacity < 0 || type.capacity > 10_000_000 {
                return .badRequest("invalid_field", "'ticket_types[\(index)].capacity' must be between 0 and 10000000")
            }
        }
        return nil
    }
}

/// Reads and writes events and their ticket types.
public protocol EventRepository: Sendable {
    func list() async throws -> [EventDetails]
    func get(_ id: UUID) async throws -> EventDetails?
    func create(_ event: NewEvent) async throws -> EventDetails
    func availability(_ eventID: UUID) async throws -> AvailabilitySnapshot?
}

public struct PostgresEventRepository: EventRepository {
    let client: PostgresClient
    let logger: Logger
    let deadline: DatabaseDeadline

    public init(client: PostgresClient, deadline: DatabaseDeadline = DatabaseDeadline(), logger: Logger) {
        self.client = client
        self.deadline = deadline
        self.logger = logger
    }

    public func list() async throws -> [EventDetails] {
        try await deadline.run("listing the events") { try await listing() }
    }

    public func get(_ id: UUID) async throws -> EventDetails? {
        try await deadline.run("reading an event") { try await reading(id) }
    }

    public func availability(_ eventID: UUID) async throws -> AvailabilitySnapshot? {
        try await deadline.run("reading the availability") { try await readingAvailability(eventID) }
    }

    public func create(_ event: NewEvent) async throws -> EventDetails {
        try await deadline.run("creating an event") { try await creating(event) }
    }

    private func listing() async throws -> [EventDetails] {
        let rows = try await client.query(
            "select id, name, starts_at, venue from events order by starts_at, name", logger: logger)
        var events: [EventDetails] = []
        for try await (id, name, startsAt, venue) in rows.decode((UUID, String, Date, String).self) {
            events.append(EventDetails(id: id, name: name, startsAt: startsAt, venue: venue, ticketTypes: []))
        }
        let types = try await ticketTypes(eventIDs: events.map(\.id))
        return events.map { event in
            var event = event
            event.ticketTypes = types[event.id] ?? []
            return event
        }
    }

    private func reading(_ id: UUID) async throws -> EventDetails? {
        let rows = try await client.query("select id, name, starts_at, venue from events where id = \(id)", logger: logger)
        for try await (id, name, startsAt, venue) in rows.decode((UUID, String, Date, String).self) {
            let types = try await ticketTypes(eventIDs: [id])
            return EventDetails(id: id, name: name, startsAt: startsAt, venue: venue, ticketTypes: types[id] ?? [])
        }
        return nil
    }

    private func readingAvailability(_ eventID: UUID) async throws -> AvailabilitySnapshot? {
        // one statement, so the event's existence and its counts come from the same snapshot
        let rows = try await client.query(
            """
            select e.id, a.id, a.name, a.price_cents, a.capacity, a.sold, a.reserved, a.available, a.version
              from events e left join event_ticket_availability a on a.event_id = e.id
             where e.id = \(eventID)
             order by a.price_cents desc, a.name
            """, logger: logger)
        var found = false
        var types: [TicketTypeAvailability] = []
        for try await (_, id, name, price, capacity, sold, reserved, available, version) in rows.decode(
            (UUID, UUID?, String?, Int?, Int?, Int?, Int?, Int?, Int64?).self)
        {
            found = true
            if let id, let name, let price, let capacity, let sold, let reserved, let available, let version {
                types.append(
                    TicketTypeAvailability(
                        id: id, name: name, priceCents: price, capacity: capacity, sold: sold, reserved: reserved, available: available,
                        version: version))
            }
        }
        return found ? AvailabilitySnapshot(eventID: eventID, ticketTypes: types) : nil
    }

    private func creating(_ event: NewEvent) async throws -> EventDetails {
        let venue = event.venue ?? ""
        let id = try await client.withTransaction(logger: logger) { connection -> UUID in
            let rows = try await connection.query(
                "insert into events (name, starts_at, venue) values (\(event.name), \(event.startsAt), \(venue)) returning id", logger: logger)
            var eventID: UUID?
            for try await id in rows.decode(UUID.self) { eventID = id }
            guard let eventID else { throw APIError(.internalServerError, "internal_error", "the event was not created") }
            for type in event.ticketTypes {
                try await connection.query(
                    """
                    insert into event_tickets (event_id, name, price_cents, capacity)
                    values (\(eventID), \(type.name), \(type.priceCents), \(type.capacity))
                    """, logger: logger)
            }
            return eventID
        }
        guard let created = try await reading(id) else { throw APIError(.internalServerError, "internal_error", "the event vanished") }
        return created
    }

    private func ticketTypes(eventIDs: [UUID]) async throws -> [UUID: [TicketTypeAvailability]] {
        guard !eventIDs.isEmpty else { return [:] }
        let rows = try await client.query(
            """
            select event_id, id, name, price_cents, capacity, sold, reserved, available, version
              from event_ticket_availability where event_id = any(\(eventIDs))
             order by price_cents desc, name
            """, logger: logger)
        var result: [UUID: [TicketTypeAvailability]] = [:]
        for try await (eventID, id, name, price, capacity, sold, reserved, available, version) in rows.decode(
            (UUID, UUID, String, Int, Int, Int, Int, Int, Int64).self)
        {
            result[eventID, default: []].append(
                TicketTypeAvailability(
                    id: id, name: name, priceCents: price, capacity: capacity, sold: sold, reserved: reserved, available: available,
                    version: version))
        }
        return result
    }
}
