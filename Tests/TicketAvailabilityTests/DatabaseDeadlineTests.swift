import Foundation
import MarqueeCore
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

/// A database that stops answering (a TCP proxy between the server and PostgreSQL that stalls every connection):
/// requests get a 503 and joins an error within the server's database deadline instead of hanging, and the server
/// still stops promptly.
@Suite(.testDatabase, .serialized) struct DatabaseDeadlineTests {
    // long enough for the set-up (an event created through the server) on a busy machine, short enough to wait for
    static let limit: Duration = .seconds(3)

    @Test func requestsFailWithinTheDeadlineAndTheServerStopsWhileTheDatabaseStalls() async throws {
        guard let database = TestDatabase.current?.url else { throw TestFailure("this suite needs the .testDatabase trait") }
        let proxy = try await FaultProxy.start(targetPort: database.port)
        var proxied = database
        proxied.host = "127.0.0.1"
        proxied.port = proxy.port
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("marquee-deadline-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await RunningServer.start(database: proxied, node: "d\(UUID().uuidString.lowercased().prefix(8))", dataDirectory: directory)
        {
            $0.databaseTimeout = Self.limit
        }
        do {
            let (event, types) = try await createEvent(server, capacities: [10])
            let buyer = try await server.token(.authenticated, sub: "deadline-buyer")
            #expect(try await server.truth(event).ticketTypes.count == 1)

            proxy.stall()
            let http = URLSessionHTTPTransport()
            // bounded by the server's deadline, not by the database: a generous margin over it for a busy machine
            let bound = Self.limit + .seconds(5)
            let availability = try await withDeadline(bound, "waiting for the availability while the database stalls") {
                try await http.send(
                    HTTPRequest(
                        method: "GET", url: server.baseURL.appendingPathComponent("api/events/\(event)/availability"), headers: [:], body: Data()))
            }
            try Self.expectTimeout(availability)
            let reservation = try await withDeadline(bound, "waiting for a reservation while the database stalls") {
                try await http.send(
                    HTTPRequest(
                        method: "POST", url: server.baseURL.appendingPathComponent("api/events/\(event)/reservations"),
                        headers: ["Authorization": "Bearer \(buyer)", "Idempotency-Key": UUID().uuidString, "Content-Type": "application/json"],
                        body: Data(#"{"ticket_type_id":"\#(types[0])","quantity":1}"#.utf8)))
            }
            try Self.expectTimeout(reservation)
            try await withDeadline(bound * 2, "waiting for the joins while the database stalls") {
                try await Self.expectJoinsReportTheDatabase(server: server, event: event, token: buyer)
            }
            // new connections stall in their startup: the pool is connecting when the server stops
            proxy.cutAll()
            let reconnecting = try await withDeadline(bound, "waiting for the availability while connections stall") {
                try await http.send(
                    HTTPRequest(
                        method: "GET", url: server.baseURL.appendingPathComponent("api/events/\(event)/availability"), headers: [:], body: Data()))
            }
            try Self.expectTimeout(reconnecting)
            // the change feed's statements and the pool's connection attempts are all stuck in the proxy
            try await withDeadline(.seconds(10), "waiting for the server to stop while the database stalls") { try await server.stop() }
        } catch {
            try? await server.stop()
            await proxy.shutdown()
            throw error
        }
        await proxy.shutdown()
    }

    /// A private join (its access is the database's to decide) is refused with a reason; a join asking for a snapshot
    /// is accepted, then told that its rows could not be read and dropped with `phx_error`, so that the client rejoins.
    static func expectJoinsReportTheDatabase(server: RunningServer, event: UUID, token: String) async throws {
        let url = "ws://127.0.0.1:\(server.port)/realtime/v1/websocket?apikey=\(token)&vsn=1.0.0"
        try await WebSocketTransport().run(url: url) { link in
            var frames = link.frames.makeAsyncIterator()
            func next(_ topic: String, _ event: String) async throws -> JSONValue {
                while let text = try await frames.next() {
                    let frame = try JSONValue.parse(Data(text.utf8))
                    if frame["topic"]?.stringValue == topic, frame["event"]?.stringValue == event { return frame }
                }
                throw TestFailure("the socket ended before \(event) on \(topic)")
            }
            try await link.send(
                #"{"topic":"realtime:room-1","event":"phx_join","ref":"1","join_ref":"1","payload":{"config":{"private":true}}}"#)
            let refused = try await next("realtime:room-1", "phx_reply")
            #expect(refused["payload"]?["status"]?.stringValue == "error")
            #expect(refused["payload"]?["response"]?["reason"]?.stringValue?.hasPrefix("DatabaseUnavailable: ") == true)

            let topic = "realtime:event-\(event.lowercased)"
            try await link.send(
                #"{"topic":"\#(topic)","event":"phx_join","ref":"2","join_ref":"2","payload":{"config":{"postgres_changes":[{"event":"UPDATE","schema":"public","table":"event_tickets","filter":"event_id=eq.\#(event.lowercased)"}],"marquee":{"snapshot":true}}}}"#
            )
            #expect(try await next(topic, "phx_reply")["payload"]?["status"]?.stringValue == "ok")
            var system = try await next(topic, "system")
            if system["payload"]?["status"]?.stringValue == "ok" { system = try await next(topic, "system") }  // Subscribed to PostgreSQL
            #expect(system["payload"]?["status"]?.stringValue == "error")
            #expect(system["payload"]?["message"]?.stringValue?.hasPrefix("DatabaseUnavailable: ") == true)
            #expect(try await next(topic, "phx_error")["ref"]?.stringValue == "2")  // v1 frames carry the join ref as ref
        }
    }

    static func expectTimeout(_ response: HTTPResponse) throws {
        #expect(response.status == 503)
        let body = try JSONValue.parse(response.body)
        // a query given up at the deadline, or (when the stalled database also holds up the pool's new connections)
        // a connection that could not be had in time: both are the database not answering, answered within the bound
        let code = body["error"]?["code"]?.stringValue
        #expect(code == "database_timeout" || code == "database_unavailable", "\(body)")
        #expect(body["error"]?["message"]?.stringValue?.isEmpty == false)
    }
}
