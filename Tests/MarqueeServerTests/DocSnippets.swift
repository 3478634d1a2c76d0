import Foundation
import MarqueeCore
import TicketAvailability

// The Swift snippets of docs/subscription-patterns.md, compiled with the tests. tests/docs/test_doc_snippets.py checks
// that each snippet in the doc is, line for line, the body of one of these functions.

/// `<!-- snippet: swift-counts -->`
func docSnippetSwiftCounts(anonKey: String, eventID: UUID) async throws {
    let config = TicketAvailabilityClient.Configuration(baseURL: URL(string: "http://127.0.0.1:8080")!, accessToken: anonKey)
    let client = TicketAvailabilityClient(configuration: config)
    for await snapshot in try await client.subscribe(event: eventID) {
        for type in snapshot.ticketTypes { print(type.name, type.available, type.status) }
    }
}

/// `<!-- snippet: swift-reservations -->`
func docSnippetSwiftReservations(anonKey: String, eventID: UUID, onReservation: @escaping @Sendable (JSONValue) -> Void) async throws {
    let serializer = PhoenixSerializer.v1
    let url = "ws://127.0.0.1:8080/realtime/v1/websocket?apikey=\(anonKey)&vsn=1.0.0"
    try await WebSocketTransport().run(url: url) { link in
        let binding: JSONValue = .object([
            "event": "INSERT", "schema": "public", "table": "tickets", "filter": .string("event_id=eq.\(eventID.uuidString)"),
        ])
        let join = PhoenixMessage(
            joinRef: "1", ref: "1", topic: "realtime:event-\(eventID.uuidString)-reservations", event: "phx_join",
            payload: .object(["config": .object(["postgres_changes": .array([binding])])]))
        try await link.send(serializer.encode(join))
        for try await text in link.frames {
            let message = try serializer.decode(text)
            if message.event == "postgres_changes", let record = message.payload["data"]?["record"] { onReservation(record) }
        }
    }
}
