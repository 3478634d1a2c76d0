import Foundation
import MarqueeCore
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

/// A database that stops answering (a TCP proxy between the server and PostgreSQL that stalls every connection):
/// requests get a 503 within the server's database deadline instead of hanging, and the server still stops promptly.
@Suite(.testDatabase, .serialized) struct DatabaseDeadlineTests {
    static let limit: Duration = .seconds(1)

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
            // the pool's connections, the change feed's and the hold sweeper's statements are all stuck in the proxy
            try await withDeadline(.seconds(10), "waiting for the server to stop while the database stalls") { try await server.stop() }
        } catch {
            try? await server.stop()
            await proxy.shutdown()
            throw error
        }
        await proxy.shutdown()
    }

    static func expectTimeout(_ response: HTTPResponse) throws {
        #expect(response.status == 503)
        let body = try JSONValue.parse(response.body)
        #expect(body["error"]?["code"]?.stringValue == "database_timeout")
        #expect(body["error"]?["message"]?.stringValue?.contains("did not answer") == true)
    }
}
