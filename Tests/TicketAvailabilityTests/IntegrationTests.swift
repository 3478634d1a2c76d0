import Foundation
import MarqueeCore
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

@Suite(.testDatabase) struct IntegrationTests {
    /// Many SDK clients on one event converge to the database's counts while reservations happen concurrently.
    @Test func manyClientsConvergeToTheDatabaseDuringABurst() async throws {
        try await withLiveServer { server in
            let (event, type) = try await server.createEvent(capacity: 500)
            let anon = try await server.token(.anon, sub: nil)
            let clientCount = 200
            var clients: [TicketAvailabilityClient] = []
            var subscriptions: [AvailabilitySubscription] = []
            for _ in 0..<clientCount {
                var configuration = TicketAvailabilityClient.Configuration(baseURL: server.baseURL, accessToken: anon)
                configuration.coalescingInterval = .milliseconds(50)
                let client = TicketAvailabilityClient(configuration: configuration)
                clients.append(client)
                subscriptions.append(try await client.subscribe(event: event))
            }
            let watchers = subscriptions
            // each has its first picture (from the join snapshot)
            try await withDeadline(.seconds(60), "waiting for every client's first picture") {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for subscription in watchers {
                        group.addTask { _ = try await firstMatch(subscription, "first picture", limit: .seconds(60)) { _ in true } }
                    }
                    try await group.waitForAll()
                }
            }
            // a burst of reservations through the SDK from several buyers, some refused at the end
            var buyerConfiguration = TicketAvailabilityClient.Configuration(baseURL: server.baseURL, accessToken: "")
            buyerConfiguration.accessToken = try await server.token(.authenticated, sub: "buyer-1")
            let buyer = TicketAvailabilityClient(configuration: buyerConfiguration)
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<120 {
                    group.addTask {
                        do {
                            _ = try await buyer.reserve(event: event, ticketType: type, quantity: 1 + index % 7)
                            return true
                        } catch is ReservationError {
                            return false
                        }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.contains(true))
            let truth = try await server.truth(event)
            let expected = try #require(truth.ticketTypes.first)
            #expect(expected.sold + expected.reserved + expected.available == 500)
            try await withDeadline(.seconds(60), "waiting for every client to reach version \(expected.version)") {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for subscription in watchers {
                        group.addTask {
                            let last = try await firstMatch(subscription, "convergence", limit: .seconds(60)) {
                                $0.ticketTypes.first?.version == expected.version
                            }
                            #expect(last.ticketTypes.first == expected)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            for client in clients { await client.shutdown() }
            await buyer.shutdown()
        }
    }

    /// Shutting a client down closes its socket: the server lets the connection go (no socket is left open for the
    /// server to wait on when it stops).
    @Test func shutdownClosesTheSocket() async throws {
        try await withLiveServer { server in
            let (event, _) = try await server.createEvent(capacity: 5)
            let anon = try await server.token(.anon, sub: nil)
            let client = TicketAvailabilityClient(configuration: .init(baseURL: server.baseURL, accessToken: anon))
            let subscription = try await client.subscribe(event: event)
            _ = try await firstMatch(subscription, "waiting for the first picture") { _ in true }
            #expect(try await server.openSockets() == 1)
            await client.shutdown()
            // logged once the hub has unregistered the connection
            try await server.log.waitFor("realtime disconnected")
            #expect(try await server.openSockets() == 0)
        }
    }

    /// Requests cancelled at every moment of their life (before sending, while waiting, while the answer arrives)
    /// end; on Linux, URLSession's own async API can deadlock when a cancel meets the request's completion.
    @Test func cancelledHTTPRequestsAlwaysEnd() async throws {
        try await withLiveServer { server in
            let (event, _) = try await server.createEvent(capacity: 5)
            let transport = URLSessionHTTPTransport()
            let request = HTTPRequest(method: "GET", url: server.baseURL.appendingPathComponent("api/events/\(event.lowercased)/availability"))
            let answered = try await withDeadline(.seconds(60), "waiting for 600 requests, each cancelled at a different moment") {
                var answered = 0
                for attempt in 0..<600 {
                    let task = Task { try await transport.send(request) }
                    for _ in 0..<(attempt % 40) { await Task.yield() }
                    task.cancel()
                    if case .success(let response) = await task.result, response.status == 200 { answered += 1 }
                }
                return answered
            }
            // some were answered before their cancel arrived, and the rest ended with an error: none hung
            #expect(answered < 600)
        }
    }
}
