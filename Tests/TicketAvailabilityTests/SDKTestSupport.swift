import Foundation
import MarqueeCore
import Synchronization
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An HTTP transport answering with a handler the test sets, recording every request.
final class FakeHTTP: HTTPTransport {
    typealias Handler = @Sendable (HTTPRequest) throws -> HTTPResponse
    private let state = Mutex<(handler: Handler, requests: [HTTPRequest])>(({ _ in HTTPResponse(status: 503, body: Data()) }, []))

    struct Unreachable: Error {}

    func setHandler(_ handler: @escaping Handler) { state.withLock { $0.handler = handler } }
    var requests: [HTTPRequest] { state.withLock { $0.requests } }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let handler = state.withLock { state in
            state.requests.append(request)
            return state.handler
        }
        return try handler(request)
    }
}

/// A ticket type row as the server sends it.
func row(event: UUID, type: UUID, available: Int, version: Int64, capacity: Int = 100, name: String = "GA") -> JSONObject {
    [
        "id": .string(type.lowercased), "event_id": .string(event.lowercased), "name": .string(name), "price_cents": 1000,
        "capacity": .int(Int64(capacity)), "sold": .int(Int64(capacity - available)), "reserved": 0, "available": .int(Int64(available)),
        "version": .int(version),
    ]
}

func availabilityBody(event: UUID, rows: [JSONObject]) -> Data {
    let body: JSONObject = ["event_id": .string(event.lowercased), "version": 0, "ticket_types": .array(rows.map { .object($0) })]
    return Data(JSONValue.object(body).serialized().utf8)
}

/// The server's side of an in-memory connection, speaking the 2.0.0 format.
struct FakeServer: Sendable {
    let connection: InMemoryConnection

    func next() async throws -> PhoenixMessage {
        guard let text = try await connection.nextFromClient() else { throw TestFailure("the client closed the connection") }
        return try PhoenixSerializer.v2.decode(text)
    }

    /// The next client message with `event`, skipping others (e.g. heartbeats).
    func next(_ event: String) async throws -> PhoenixMessage {
        while true {
            let message = try await next()
            if message.event == event { return message }
        }
    }

    func send(_ message: PhoenixMessage) { connection.push(PhoenixSerializer.v2.encode(message)) }

    func replyOK(to message: PhoenixMessage) {
        send(
            PhoenixMessage(
                joinRef: message.joinRef, ref: message.ref, topic: message.topic, event: "phx_reply",
                payload: .object(["status": "ok", "response": .object(["postgres_changes": .array([])])])))
    }

    /// Accepts the next join and returns it.
    func acceptJoin() async throws -> PhoenixMessage {
        let join = try await next("phx_join")
        replyOK(to: join)
        return join
    }

    func push(topic: String, record: JSONObject, snapshot: Bool = false) {
        var data: JSONObject = [
            "schema": "public", "table": "event_tickets", "type": "UPDATE", "commit_timestamp": "2026-01-01T00:00:00.000Z",
            "columns": .array([]), "record": .object(record), "old_record": .object([:]), "errors": .null,
        ]
        if snapshot { data["snapshot"] = true }
        send(PhoenixMessage(topic: topic, event: "postgres_changes", payload: .object(["ids": .array([1]), "data": .object(data)])))
    }
}

/// A client on an in-memory transport, a fake HTTP server and a manual clock.
struct Harness: Sendable {
    let transport = InMemoryTransport()
    let http = FakeHTTP()
    let clock = ManualClock()
    let client: TicketAvailabilityClient

    init(_ configure: (inout TicketAvailabilityClient.Configuration) -> Void = { _ in }) {
        var configuration = TicketAvailabilityClient.Configuration(baseURL: URL(string: "http://marquee.test")!, accessToken: "token-1")
        configuration.coalescingInterval = .zero
        configuration.random = { 0 }
        configure(&configuration)
        client = TicketAvailabilityClient(configuration: configuration, transport: transport, http: http, clock: clock)
    }

    func nextServer() async throws -> FakeServer {
        try await withDeadline(.seconds(5), "waiting for a connection") { FakeServer(connection: try await transport.nextConnection()) }
    }

    /// Waits until a task sleeps on the clock with exactly `remaining` left, then advances by it.
    func advance(past remaining: Duration) async throws {
        let clock = self.clock
        try await withDeadline(.seconds(5), "waiting for a sleep of \(remaining) (pending: \(clock.pendingSleeps))") {
            await clock.waitForSleeper(remaining: remaining)
        }
        clock.advance(by: remaining)
    }
}

/// Iterates `sequence` until an element satisfies `predicate` (within a real-time deadline) and returns it.
func firstMatch<S: AsyncSequence & Sendable>(
    _ sequence: S, _ what: String, limit: Duration = .seconds(5), where predicate: @escaping @Sendable (S.Element) -> Bool
) async throws -> S.Element where S.Element: Sendable {
    try await withDeadline(limit, what) {
        for try await element in sequence where predicate(element) { return element }
        throw TestFailure("the sequence ended while \(what)")
    }
}
