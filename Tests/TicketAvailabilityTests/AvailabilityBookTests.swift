import Foundation
import MarqueeCore
import Testing

@testable import TicketAvailability

@Suite struct AvailabilityBookTests {
    let event = UUID()
    let type = UUID()

    func record(available: Int, version: Int64) -> JSONObject {
        [
            "id": .string(type.lowercased), "event_id": .string(event.lowercased), "name": "GA", "price_cents": 1000, "capacity": 10,
            "sold": .int(Int64(10 - available)), "reserved": 0, "available": .int(Int64(available)), "version": .int(version),
        ]
    }

    @Test func appliesOnlyNewerVersions() {
        var book = AvailabilityBook(eventID: event)
        let first = book.apply(record: record(available: 9, version: 2))
        let stale = book.apply(record: record(available: 10, version: 1))
        let duplicate = book.apply(record: record(available: 9, version: 2))
        let newer = book.apply(record: record(available: 4, version: 4))
        #expect(first && !stale && !duplicate && newer)
        #expect(book.snapshot.ticketTypes.map(\.available) == [4])
        #expect(book.snapshot.ticketTypes.first?.status == .fewLeft)
    }

    @Test func ignoresRowsOfOtherEventsAndBrokenRecords() {
        var book = AvailabilityBook(eventID: event)
        var other = record(available: 1, version: 9)
        other["event_id"] = .string(UUID().lowercased)
        let appliedOther = book.apply(record: other)
        #expect(!appliedOther)
        var broken = record(available: 1, version: 9)
        broken["available"] = "many"
        let appliedBroken = book.apply(record: broken)
        #expect(!appliedBroken)
        #expect(book.snapshot.ticketTypes.isEmpty)
    }
}
