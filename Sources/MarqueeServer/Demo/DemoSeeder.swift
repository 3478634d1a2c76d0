import Foundation
import Logging
import PostgresNIO

/// Demo events with ticket types of different sizes: one nearly sold out, one sold out, plenty of room elsewhere.
public enum DemoSeeder {
    struct DemoType {
        var name: String
        var priceCents: Int
        var capacity: Int
        var presold: Int
    }

    struct DemoEvent {
        var name: String
        var daysAhead: Int
        var venue: String
        var types: [DemoType]
    }

    static let events: [DemoEvent] = [
        DemoEvent(
            name: "Aurora Nights — Live at the Harbor", daysAhead: 30, venue: "Harbor Arena",
            types: [
                DemoType(name: "Front Row", priceCents: 25_000, capacity: 20, presold: 17),
                DemoType(name: "VIP", priceCents: 12_000, capacity: 100, presold: 40),
                DemoType(name: "General Admission", priceCents: 5_500, capacity: 2_000, presold: 350),
            ]),
        DemoEvent(
            name: "Midnight Jazz Quartet", daysAhead: 12, venue: "Blue Room",
            types: [
                DemoType(name: "Table", priceCents: 8_000, capacity: 24, presold: 6),
                DemoType(name: "Standing", priceCents: 3_000, capacity: 150, presold: 20),
            ]),
        DemoEvent(
            name: "City Marathon After-Party", daysAhead: 45, venue: "Riverside Hall",
            types: [
                DemoType(name: "Early Bird", priceCents: 1_500, capacity: 200, presold: 200),
                DemoType(name: "Regular", priceCents: 2_500, capacity: 600, presold: 80),
            ]),
    ]

    /// Creates the demo events that do not exist yet (by name); returns how many it created. Seats already sold go
    /// through the same triggers as any sale.
    @discardableResult
    public static func seed(_ database: DatabaseURL, logger: Logger) async throws -> Int {
        try await database.withConnection(logger: logger) { connection in
            var created = 0
            for event in events {
                try await connection.query("begin", logger: logger)
                do {
                    let rows = try await connection.query(
                        """
                        insert into events (name, starts_at, venue)
                        select \(event.name), date_trunc('day', now()) + make_interval(days => \(event.daysAhead)::int, hours => 20), \(event.venue)
                        where not exists (select 1 from events where name = \(event.name))
                        returning id
                        """, logger: logger)
                    var eventID: UUID?
                    for try await id in rows.decode(UUID.self) { eventID = id }
                    if let eventID {
                        for type in event.types {
                            let typeRows = try await connection.query(
                                """
                                insert into event_tickets (event_id, name, price_cents, capacity)
                                values (\(eventID), \(type.name), \(type.priceCents), \(type.capacity)) returning id
                                """, logger: logger)
                            var typeID: UUID?
                            for try await id in typeRows.decode(UUID.self) { typeID = id }
                            if let typeID, type.presold > 0 {
                                try await connection.query(
                                    """
                                    insert into tickets (event_id, event_ticket_id, user_id, quantity, status, idempotency_key)
                                    values (\(eventID), \(typeID), 'box-office', \(type.presold), 'confirmed', \("presale-\(typeID)"))
                                    """, logger: logger)
                            }
                        }
                        created += 1
                    }
                    try await connection.query("commit", logger: logger)
                } catch {
                    _ = try? await connection.query("rollback", logger: logger)
                    throw error
                }
            }
            return created
        }
    }
}
