import Foundation

/// How a ticket type is shown to buyers.
public enum AvailabilityStatus: String, Sendable, Codable, Hashable, CaseIterable {
    case available
    case fewLeft = "few_left"
    case soldOut = "sold_out"

    /// `sold_out` when nothing is left, `few_left` when at most max(5, 10% of capacity) are left, else `available`.
    public init(available: Int, capacity: Int) {
        if available <= 0 {
            self = .soldOut
        } else if available <= Self.fewLeftThreshold(capacity: capacity) {
            self = .fewLeft
        } else {
            self = .available
        }
    }

    /// The largest count still shown as "few left": max(5, 10% of capacity, rounded down).
    public static func fewLeftThreshold(capacity: Int) -> Int {
        max(5, capacity / 10)
    }
}

/// One ticket type of an event with its live counts, as the availability snapshot and the event API return it.
public struct TicketTypeAvailability: Sendable, Codable, Hashable, Identifiable {
    public var id: UUID
    public var name: String
    public var priceCents: Int
    public var capacity: Int
    public var sold: Int
    public var reserved: Int
    public var available: Int
    public var status: AvailabilityStatus
    public var version: Int64

    public init(
        id: UUID, name: String, priceCents: Int, capacity: Int, sold: Int, reserved: Int, available: Int, version: Int64
    ) {
        self.id = id
        self.name = name
        self.priceCents = priceCents
        self.capacity = capacity
        self.sold = sold
        self.reserved = reserved
        self.available = available
        self.status = AvailabilityStatus(available: available, capacity: capacity)
        self.version = version
    }

    enum CodingKeys: String, CodingKey {
        case id, name, capacity, sold, reserved, available, status, version
        case priceCents = "price_cents"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id.lowercased, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(priceCents, forKey: .priceCents)
        try c.encode(capacity, forKey: .capacity)
        try c.encode(sold, forKey: .sold)
        try c.encode(reserved, forKey: .reserved)
        try c.encode(available, forKey: .available)
        try c.encode(status, forKey: .status)
        try c.encode(version, forKey: .version)
    }
}

extension UUID {
    /// The lowercase form PostgreSQL and the Supabase clients use.
    public var lowercased: String { uuidString.lowercased() }
}

/// `GET /api/events/{id}/availability`: the snapshot clients load first and poll when they cannot hold a socket.
public struct AvailabilitySnapshot: Sendable, Codable, Hashable {
    public var eventID: UUID
    /// The highest version among the ticket types: a cheap way to tell two snapshots apart.
    public var version: Int64
    public var ticketTypes: [TicketTypeAvailability]

    public init(eventID: UUID, ticketTypes: [TicketTypeAvailability]) {
        self.eventID = eventID
        self.ticketTypes = ticketTypes
        self.version = ticketTypes.map(\.version).max() ?? 0
    }

    enum CodingKeys: String, CodingKey {
        case eventID = "event_id"
        case version
        case ticketTypes = "ticket_types"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventID.lowercased, forKey: .eventID)
        try c.encode(version, forKey: .version)
        try c.encode(ticketTypes, forKey: .ticketTypes)
    }
}

/// An event with its ticket types, as `GET /api/events/{id}` returns it.
public struct EventDetails: Sendable, Codable, Hashable, Identifiable {
    public var id: UUID
    public var name: String
    public var startsAt: Date
    public var venue: String
    public var ticketTypes: [TicketTypeAvailability]

    public init(id: UUID, name: String, startsAt: Date, venue: String, ticketTypes: [TicketTypeAvailability]) {
        self.id = id
        self.name = name
        self.startsAt = startsAt
        self.venue = venue
        self.ticketTypes = ticketTypes
    }

    /// The overall status shown in event lists: the best status among the ticket types.
    public var status: AvailabilityStatus {
        if ticketTypes.contains(where: { $0.status == .available }) { return .available }
        if ticketTypes.contains(where: { $0.status == .fewLeft }) { return .fewLeft }
        return .soldOut
    }

    enum CodingKeys: String, CodingKey {
        case id, name, venue, status
        case startsAt = "starts_at"
        case ticketTypes = "ticket_types"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(UUID.self, forKey: .id)
        name = try c.decode(String.self, forKey: .name)
        startsAt = try c.decode(Date.self, forKey: .startsAt)
        venue = try c.decode(String.self, forKey: .venue)
        ticketTypes = try c.decode([TicketTypeAvailability].self, forKey: .ticketTypes)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id.lowercased, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(startsAt, forKey: .startsAt)
        try c.encode(venue, forKey: .venue)
        try c.encode(status, forKey: .status)
        try c.encode(ticketTypes, forKey: .ticketTypes)
    }
}

/// Reservation states. Only `reserved` holds seats temporarily; `confirmed` sells them.
public enum ReservationStatus: String, Sendable, Codable, Hashable, CaseIterable {
    case reserved, confirmed, cancelled, expired
}

/// A reservation as the API returns it.
public struct Reservation: Sendable, Codable, Hashable, Identifiable {
    public var id: UUID
    public var eventID: UUID
    public var ticketTypeID: UUID
    public var quantity: Int
    public var status: ReservationStatus
    public var holdExpiresAt: Date?

    public init(id: UUID, eventID: UUID, ticketTypeID: UUID, quantity: Int, status: ReservationStatus, holdExpiresAt: Date?) {
        self.id = id
        self.eventID = eventID
        self.ticketTypeID = ticketTypeID
        self.quantity = quantity
        self.status = status
        self.holdExpiresAt = holdExpiresAt
    }

    enum CodingKeys: String, CodingKey {
        case id, quantity, status
        case eventID = "event_id"
        case ticketTypeID = "ticket_type_id"
        case holdExpiresAt = "hold_expires_at"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id.lowercased, forKey: .id)
        try c.encode(eventID.lowercased, forKey: .eventID)
        try c.encode(ticketTypeID.lowercased, forKey: .ticketTypeID)
        try c.encode(quantity, forKey: .quantity)
        try c.encode(status, forKey: .status)
        try c.encode(holdExpiresAt, forKey: .holdExpiresAt)
    }
}
