import Foundation
import MarqueeCore

/// The client's picture of one event's availability. Rows are replaced only by a strictly higher `version`, so
/// stale, duplicated or reordered messages (and a snapshot racing live changes) always converge to the database.
public struct AvailabilityBook: Sendable, Equatable {
    public let eventID: UUID
    public private(set) var ticketTypes: [UUID: TicketTypeAvailability] = [:]
    /// The order the server listed the types in (by price), kept for display.
    public private(set) var order: [UUID] = []

    public init(eventID: UUID) { self.eventID = eventID }

    /// Applies a full snapshot (from `GET /api/events/{id}/availability`); returns whether anything changed.
    @discardableResult
    public mutating func apply(_ snapshot: AvailabilitySnapshot) -> Bool {
        var changed = false
        for type in snapshot.ticketTypes { changed = apply(type) || changed }
        return changed
    }

    /// Applies one row if it is newer than what the book has; returns whether it was applied.
    @discardableResult
    public mutating func apply(_ row: TicketTypeAvailability) -> Bool {
        if let current = ticketTypes[row.id], current.version >= row.version { return false }
        if ticketTypes[row.id] == nil { order.append(row.id) }
        ticketTypes[row.id] = row
        return true
    }

    /// Applies an `event_tickets` record from a `postgres_changes` message (live or snapshot).
    @discardableResult
    public mutating func apply(record: JSONObject) -> Bool {
        guard let row = Self.ticketType(from: record), record["event_id"]?.stringValue.flatMap(UUID.init(uuidString:)) == eventID else {
            return false
        }
        return apply(row)
    }

    public var snapshot: AvailabilitySnapshot {
        AvailabilitySnapshot(eventID: eventID, ticketTypes: order.compactMap { ticketTypes[$0] })
    }

    static func ticketType(from record: JSONObject) -> TicketTypeAvailability? {
        guard let id = record["id"]?.stringValue.flatMap(UUID.init(uuidString:)), let name = record["name"]?.stringValue,
            let price = record["price_cents"]?.intValue, let capacity = record["capacity"]?.intValue, let sold = record["sold"]?.intValue,
            let reserved = record["reserved"]?.intValue, let available = record["available"]?.intValue, let version = record["version"]?.intValue
        else { return nil }
        return TicketTypeAvailability(
            id: id, name: name, priceCents: Int(price), capacity: Int(capacity), sold: Int(sold), reserved: Int(reserved),
            available: Int(available), version: version)
    }
}
