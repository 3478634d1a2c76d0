import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MarqueeCore
import NIOCore
import Testing

@testable import MarqueeServer

// MARK: - HTTP helpers

private func json(_ response: TestResponse) throws -> JSONValue {
    try JSONValue.parse(String(buffer: response.body))
}

private func call(
    _ app: LiveApp, _ method: HTTPRequest.Method, _ uri: String, token: String, body: String? = nil, headers extra: HTTPFields = [:],
    expect status: HTTPResponse.Status
) async throws -> JSONValue {
    var headers: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
    headers.append(contentsOf: extra)
    let response = try await app.client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    guard response.status == status else {
        throw TestFailure("\(method) \(uri): expected \(status.code), got \(response.status.code): \(String(buffer: response.body))")
    }
    return try json(response)
}

/// Creates an event with one ticket type through the API; returns (event id, ticket type id).
private func createEvent(_ app: LiveApp, _ name: String, capacity: Int = 100) async throws -> (event: String, ticketType: String) {
    let service = try await app.token(.serviceRole, sub: nil)
    let created = try await call(
        app, .post, "/api/events", token: service,
        body:
            #"{"name":"\#(name)","starts_at":"2030-05-01T20:00:00Z","venue":"Hall","ticket_types":[{"name":"GA","price_cents":2500,"capacity":\#(capacity)}]}"#,
        expect: .created)
    guard let event = created["id"]?.stringValue, let type = created["ticket_types"]?.arrayValue?.first?["id"]?.stringValue else {
        throw TestFailure("the created event has no ids: \(created.serialized())")
    }
    return (event, type)
}

/// Reserves through the API; returns the reservation id.
private func reserve(
    _ app: LiveApp, event: String, ticketType: String, quantity: Int, token: String, email: String? = nil
) async throws -> String {
    let emailField = email.map { #","holder_email":"\#($0)""# } ?? ""
    let reservation = try await call(
        app, .post, "/api/events/\(event)/reservations", token: token,
        body: #"{"ticket_type_id":"\#(ticketType)","quantity":\#(quantity)\#(emailField)}"#,
        headers: [HTTPField.Name("Idempotency-Key")!: "key-\(randomSuffix())"], expect: .created)
    return try #require(reservation["id"]?.stringValue)
}

private func ticketTypeUpdates(of event: String) -> JSONObject {
    ["event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": .string("event_id=eq.\(event)")]
}

/// The next frame, which must be a `postgres_changes` message; returns its payload.
private func nextChange(_ socket: SocketProbe, _ what: String) async throws -> JSONValue {
    let message = try await socket.receive(what)
    guard message.event == "postgres_changes" else {
        throw TestFailure("expected \(what) as postgres_changes, got \(socket.serializer.encode(message))")
    }
    return message.payload
}

private func ticketInserts(_ filter: String) -> JSONObject {
    ["event": "INSERT", "schema": "public", "table": "tickets", "filter": .string(filter)]
}

private func isCommitTimestamp(_ text: String?) -> Bool {
    guard let text else { return false }
    return text.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil
}

/// Row changes committed through the API reach, over real sockets, exactly the subscribers whose filters match.
@Suite(.testDatabase) struct ChangeStreamLiveTests {
    @Test func reservationUpdatesReachOnlyMatchingSubscribers() async throws {
        try await withLiveApp { app in
            let a = try await createEvent(app, "Event A", capacity: 100)
            let b = try await createEvent(app, "Event B", capacity: 50)
            let buyer = try await app.token(sub: "buyer-1")
            let watcher = try await app.token(sub: "watcher")

            try await withSocket(app, apikey: watcher) { socketA in
                let idsA = try await socketA.subscribe("realtime:event-a", ref: "1", bindings: [ticketTypeUpdates(of: a.event)])
                try await withSocket(app, apikey: watcher, vsn: "2.0.0") { socketB in
                    let idsB = try await socketB.subscribe("realtime:event-b", ref: "1", bindings: [ticketTypeUpdates(of: b.event)])

                    let reservation = try await reserve(app, event: a.event, ticketType: a.ticketType, quantity: 2, token: buyer)
                    let change = try await nextChange(socketA, "the update of event A's ticket type")
                    #expect(change["ids"] == .array(idsA.map { .int($0) }))
                    let data = try #require(change["data"]?.objectValue)
                    #expect(data["type"] == "UPDATE")
                    #expect(data["schema"] == "public")
                    #expect(data["table"] == "event_tickets")
                    #expect(data["errors"] == .null)
                    #expect(isCommitTimestamp(data["commit_timestamp"]?.stringValue), "\(data["commit_timestamp"] ?? .null)")
                    let columns = data["columns"]?.arrayValue ?? []
                    #expect(columns.contains { $0["name"] == "available" && $0["type"] == "int4" && $0.objectValue?.count == 2 })
                    #expect(columns.contains { $0["name"] == "version" && $0["type"] == "int8" })
                    let record = try #require(data["record"]?.objectValue)
                    #expect(record["id"] == .string(a.ticketType))
                    #expect(record["event_id"] == .string(a.event))
                    #expect(record["available"]?.intValue == 98)
                    #expect(record["reserved"]?.intValue == 2)
                    #expect(record["version"]?.intValue == 2)
                    // REPLICA IDENTITY FULL: the whole previous row
                    #expect(data["old_record"]?["available"]?.intValue == 100)
                    #expect(data["old_record"]?["version"]?.intValue == 1)

                    // event B's subscriber got nothing for A: the first change it receives is B's own
                    _ = try await reserve(app, event: b.event, ticketType: b.ticketType, quantity: 3, token: buyer)
                    let changeB = try await nextChange(socketB, "the update of event B's ticket type")
                    #expect(changeB["ids"] == .array(idsB.map { .int($0) }))
                    #expect(changeB["data"]?["record"]?["event_id"] == .string(b.event))
                    #expect(changeB["data"]?["record"]?["available"]?.intValue == 47)

                    // and A's subscriber got nothing for B: its next change is the cancellation on A
                    _ = try await call(app, .post, "/api/reservations/\(reservation)/cancel", token: buyer, expect: .ok)
                    let cancelled = try await nextChange(socketA, "the update after cancelling on event A")
                    #expect(cancelled["data"]?["record"]?["event_id"] == .string(a.event))
                    #expect(cancelled["data"]?["record"]?["available"]?.intValue == 100)
                    #expect(cancelled["data"]?["record"]?["version"]?.intValue == 3)
                }
            }
        }
    }

    @Test func holderDetailsOfAReservationOnlyReachItsOwner() async throws {
        try await withLiveApp { app in
            let event = try await createEvent(app, "Private details", capacity: 10)
            let owner = try await app.token(sub: "owner-1")
            let stranger = try await app.token(sub: "stranger-1")
            try await withSocket(app, apikey: owner) { ownSocket in
                _ = try await ownSocket.subscribe("realtime:mine", ref: "1", bindings: [ticketInserts("user_id=eq.owner-1")])
                try await withSocket(app, apikey: stranger) { otherSocket in
                    _ = try await otherSocket.subscribe("realtime:event", ref: "1", bindings: [ticketInserts("event_id=eq.\(event.event)")])
                    // a stranger may not select someone else's rows by a sensitive column
                    let refused = try await otherSocket.join(
                        "realtime:snoop", ref: "2", bindings: [ticketInserts("holder_email=eq.owner@example.com")])
                    #expect(refused.payload["status"] == "ok")
                    let system = try await otherSocket.receive("the refusal of a filter on holder_email")
                    #expect(system.payload["status"] == "error")
                    #expect(system.payload["message"]?.stringValue?.contains("Unauthorized") == true)

                    _ = try await reserve(
                        app, event: event.event, ticketType: event.ticketType, quantity: 1, token: owner, email: "owner@example.com")
                    let own = try await nextChange(ownSocket, "the owner's reservation")
                    #expect(own["data"]?["record"]?["holder_email"] == "owner@example.com")
                    #expect(own["data"]?["record"]?["user_id"] == "owner-1")
                    let other = try await nextChange(otherSocket, "someone's reservation")
                    let record = try #require(other["data"]?["record"]?.objectValue)
                    #expect(record["holder_email"] == nil)
                    #expect(record["user_id"] == nil)
                    #expect(record["idempotency_key"] == nil)
                    #expect(record["quantity"]?.intValue == 1)
                    #expect(record["event_id"] == .string(event.event))
                    let columns = other["data"]?["columns"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
                    #expect(!columns.contains("holder_email"))
                    #expect(!columns.contains("user_id"))
                }
            }
        }
    }
}
