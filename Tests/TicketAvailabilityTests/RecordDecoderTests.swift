import Foundation
import MarqueeCore
import Synchronization
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

/// A row of `event_tickets` as an app might model it, with its timestamp as a `Date`.
private struct TicketTypeRow: Decodable, Sendable {
    let id: UUID
    let eventId: UUID
    let name: String
    let available: Int
    let version: Int64
    let updatedAt: Date
}

@Suite struct RecordDecoderTests {
    @Test(arguments: [
        ("2026-12-03T19:52:55.304141+00:00", 1_796_327_575.304141), ("2026-12-04T01:22:55.304141+05:30", 1_796_327_575.304141),
        ("2026-12-03T19:52:55Z", 1_796_327_575), ("2026-12-03T19:52:55", 1_796_327_575), ("2026-12-03", 1_796_256_000),
        ("1900-01-01T00:19:32+00:19:32", -2_208_988_800), ("1969-12-31T23:59:59.5+00:00", -0.5),
    ])
    func datesInTheirToJsonbForms(text: String, seconds: Double) throws {
        let date = try #require(RecordDecoder.date(text))
        #expect(abs(date.timeIntervalSince1970 - seconds) < 0.000_001, "\(text)")
    }

    @Test func infinityAndWrongShapes() {
        #expect(RecordDecoder.date("infinity") == .distantFuture && RecordDecoder.date("-infinity") == .distantPast)
        for bad in ["2026-12-03 19:52:55+00", "2026-13-03", "03/12/2026", "2026-12-03T19:52", "2026-12-03T19:52:55+0", "0044-03-15 BC", ""] {
            #expect(RecordDecoder.date(bad) == nil, "\(bad)")
        }
    }

    @Test func numericsKeepTheirDigitsAndJSONNests() throws {
        struct Row: Decodable {
            let price: Decimal
            let doc: [String: [Int]]
            let day: Date
        }
        let record: JSONObject = ["price": .raw("12345678901234567890.12"), "doc": .raw(#"{"seats": [1, 2]}"#), "day": "2026-12-03"]
        let row = try RecordDecoder().decode(Row.self, from: record)
        #expect(row.price == Decimal(string: "12345678901234567890.12"))
        #expect(row.doc == ["seats": [1, 2]])
        #expect(row.day == Date(timeIntervalSince1970: 1_796_256_000))
    }
}

/// A `Date` property decodes from the `updated_at` of a real `event_tickets` UPDATE, received over the SDK's WebSocket
/// transport from a live server, and equals the database's value.
@Suite(.testDatabase) struct RecordDecoderLiveTests {
    @Test func aDateFieldDecodesFromAnEventTicketsUpdate() async throws {
        try await withLiveServer { server in
            let (event, type) = try await server.createEvent(capacity: 20)
            let anon = try await server.token(.anon, sub: nil)
            let url = "ws://127.0.0.1:\(server.port)/realtime/v1/websocket?apikey=\(anon)&vsn=1.0.0"
            let filter = "event_id=eq.\(event.uuidString.lowercased())"
            let join = #"""
                {"topic":"realtime:typed","event":"phx_join","ref":"1","join_ref":"1","payload":{"config":{"postgres_changes":\#
                [{"event":"UPDATE","schema":"public","table":"event_tickets","filter":"\#(filter)"}]}}}
                """#
            var buyerConfiguration = TicketAvailabilityClient.Configuration(baseURL: server.baseURL, accessToken: "")
            buyerConfiguration.accessToken = try await server.token(.authenticated, sub: "typed-buyer")
            let buyer = TicketAvailabilityClient(configuration: buyerConfiguration)
            let received = Mutex<JSONObject?>(nil)
            try await withDeadline(.seconds(30), "waiting for the UPDATE of the ticket type") {
                try await WebSocketTransport().run(url: url) { link in
                    try await link.send(join)
                    for try await frame in link.frames {
                        let message = try JSONValue.parse(frame)
                        if message["event"] == "system" {
                            _ = try await buyer.reserve(event: event, ticketType: type, quantity: 2)
                        } else if message["event"] == "postgres_changes" {
                            received.withLock { $0 = message["payload"]?["data"]?["record"]?.objectValue }
                            return
                        }
                    }
                }
            }
            let record = received.withLock { $0 }
            await buyer.shutdown()
            let row = try RecordDecoder(keyDecodingStrategy: .convertFromSnakeCase).decode(TicketTypeRow.self, from: try #require(record))
            #expect(row.id == type && row.eventId == event && row.available == 18 && row.version == 2 && row.name == "GA")
            let database = try #require(TestDatabase.current)
            let stored = try await database.url.withConnection(logger: TestDatabase.logger) { connection in
                var micros: Int64?
                let rows = try await connection.query(
                    "select (extract(epoch from updated_at) * 1000000)::int8 from event_tickets where id = \(type)", logger: TestDatabase.logger)
                for try await value in rows.decode(Int64.self) { micros = value }
                return micros
            }
            let expected = Double(try #require(stored)) / 1_000_000
            #expect(abs(row.updatedAt.timeIntervalSince1970 - expected) < 0.000_001)
        }
    }
}
