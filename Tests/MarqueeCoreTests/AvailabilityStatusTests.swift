import Foundation
import Testing

@testable import MarqueeCore

@Suite struct AvailabilityStatusTests {
    @Test(arguments: [
        // capacity 100: few_left up to 10 (10%)
        (100, 100, AvailabilityStatus.available),
        (100, 11, .available),
        (100, 10, .fewLeft),
        (100, 1, .fewLeft),
        (100, 0, .soldOut),
        // capacity 20: few_left up to 5 (the floor of 5 beats 10% = 2)
        (20, 20, .available),
        (20, 6, .available),
        (20, 5, .fewLeft),
        (20, 0, .soldOut),
        // capacity 1000: up to 100
        (1000, 101, .available),
        (1000, 100, .fewLeft),
        // tiny capacities are few_left from the start
        (3, 3, .fewLeft),
        (0, 0, .soldOut),
    ])
    func thresholds(capacity: Int, available: Int, expected: AvailabilityStatus) {
        #expect(AvailabilityStatus(available: available, capacity: capacity) == expected)
    }

    @Test func fewLeftThreshold() {
        #expect(AvailabilityStatus.fewLeftThreshold(capacity: 100) == 10)
        #expect(AvailabilityStatus.fewLeftThreshold(capacity: 20) == 5)
        #expect(AvailabilityStatus.fewLeftThreshold(capacity: 59) == 5)
        #expect(AvailabilityStatus.fewLeftThreshold(capacity: 61) == 6)
    }

    @Test func wireNames() throws {
        #expect(AvailabilityStatus.allCases.map(\.rawValue) == ["available", "few_left", "sold_out"])
        let data = try JSONEncoder().encode([AvailabilityStatus.fewLeft, .soldOut])
        #expect(String(decoding: data, as: UTF8.self) == #"["few_left","sold_out"]"#)
    }

    @Test func ticketTypeDerivesItsStatus() {
        let id = UUID()
        let type = TicketTypeAvailability(id: id, name: "GA", priceCents: 1000, capacity: 100, sold: 80, reserved: 10, available: 10, version: 3)
        #expect(type.status == .fewLeft)
        let event = EventDetails(
            id: UUID(), name: "Show", startsAt: Date(timeIntervalSince1970: 0), venue: "Hall",
            ticketTypes: [
                type,
                TicketTypeAvailability(id: UUID(), name: "VIP", priceCents: 5000, capacity: 20, sold: 20, reserved: 0, available: 0, version: 9),
            ])
        #expect(event.status == .fewLeft)
        #expect(AvailabilitySnapshot(eventID: event.id, ticketTypes: event.ticketTypes).version == 9)
    }
}
