import Foundation
import MarqueeCore
import Synchronization
import Testing

import MarqueeServer
@testable import TicketAvailability

@Suite struct FallbackTests {
    let event = UUID()
    let type = UUID()
    var topic: String { ChannelTable.topic(for: event) }

    @Test func pollsWhenRealtimeKeepsFailingAndReturnsToRealtime() async throws {
        let harness = Harness {
            $0.pollAfterFailures = 2
            $0.pollInterval = .seconds(5)
            $0.reconnectBaseDelay = .seconds(1)
            $0.maxReconnectDelay = .seconds(12)
        }
        let event = self.event
        let type = self.type
        let available = Mutex(30)
        let version = Mutex<Int64>(1)
        harness.http.setHandler { request in
            guard request.url.path == "/api/events/\(event.lowercased)/availability" else { return HTTPResponse(status: 404, body: Data()) }
            return HTTPResponse(
                status: 200,
                body: availabilityBody(
                    event: event, rows: [row(event: event, type: type, available: available.withLock { $0 }, version: version.withLock { $0 })]))
        }
        harness.transport.mode = .refuse
        let statuses = await harness.client.statusUpdates()
        let subscription = try await harness.client.subscribe(event: event)
        _ = try await firstMatch(statuses, "waiting for reconnecting") { $0 == .reconnecting(attempt: 1) }
        try await harness.advance(past: .seconds(1))
        _ = try await firstMatch(statuses, "waiting for polling") { $0 == .polling }
        let polled = try await firstMatch(subscription, "waiting for the polled snapshot") { $0.version == 1 }
        #expect(polled.ticketTypes.map(\.available) == [30])
        // the next poll brings the change; the backoff (2 s, then 4 s) keeps trying the socket meanwhile
        available.withLock { $0 = 25 }
        version.withLock { $0 = 2 }
        try await harness.advance(past: .seconds(2))
        _ = try await firstMatch(subscription, "waiting for the second poll") { $0.version == 2 }
        #expect(harness.transport.attempts == 3)
        // realtime comes back
        harness.transport.mode = .accept
        try await harness.advance(past: .seconds(4))
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        _ = try await firstMatch(statuses, "waiting for connected") { $0 == .connected }
        server.push(topic: topic, record: row(event: event, type: type, available: 20, version: 3))
        let live = try await firstMatch(subscription, "waiting for a live change") { $0.version == 3 }
        #expect(live.ticketTypes.map(\.available) == [20])
        let getsBefore = harness.http.requests.count
        try await harness.advance(past: .seconds(25))  // a heartbeat, not a poll
        _ = try await server.next("heartbeat")
        #expect(harness.http.requests.count == getsBefore)
        subscription.cancel()
    }

    @Test func loadsTheSnapshotOverHTTPWhenTheJoinDoesNotCarryIt() async throws {
        let harness = Harness { $0.joinSnapshot = false }
        let event = self.event
        let type = self.type
        harness.http.setHandler { _ in
            HTTPResponse(status: 200, body: availabilityBody(event: event, rows: [row(event: event, type: type, available: 7, version: 12)]))
        }
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        let join = try await server.acceptJoin()
        #expect(join.payload["config"]?["marquee"] == nil)
        let loaded = try await firstMatch(subscription, "waiting for the HTTP snapshot") { $0.version == 12 }
        #expect(loaded.ticketTypes.map(\.available) == [7])
        subscription.cancel()
    }
}

@Suite struct ReservationTests {
    let event = UUID()
    let type = UUID()
    var topic: String { ChannelTable.topic(for: event) }

    func reservationBody(quantity: Int) -> Data {
        let body: JSONObject = [
            "id": .string(UUID().lowercased), "event_id": .string(event.lowercased), "ticket_type_id": .string(type.lowercased),
            "quantity": .int(Int64(quantity)), "status": "reserved", "hold_expires_at": "2026-01-01T00:10:00.000Z",
        ]
        return Data(JSONValue.object(body).serialized().utf8)
    }

    /// A connected client with one event at `available` tickets (version 1).
    func connected(_ harness: Harness, available: Int) async throws -> (AvailabilitySubscription, FakeServer) {
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        server.push(topic: topic, record: row(event: event, type: type, available: available, version: 1), snapshot: true)
        _ = try await firstMatch(subscription, "waiting for the snapshot") { $0.version == 1 }
        return (subscription, server)
    }

    @Test func showsTheHoldOptimisticallyAndRollsBackOnConflict() async throws {
        let harness = Harness()
        let gate = AsyncFrameQueue<Bool>()
        harness.http.setHandler { _ in
            HTTPResponse(status: 409, body: Data(#"{"error":{"code":"insufficient_availability","message":"only 3 left","available":3}}"#.utf8))
        }
        let (subscription, _) = try await connected(harness, available: 10)
        _ = gate
        let client = harness.client
        let (event, type) = (self.event, self.type)
        await #expect(throws: ReservationError.insufficientAvailability(available: 3, message: "only 3 left")) {
            try await client.reserve(event: event, ticketType: type, quantity: 4)
        }
        #expect(await client.snapshot(event: event)?.ticketTypes.map(\.available) == [10])
        subscription.cancel()
    }

    @Test func queuesWhileOfflineAndSendsOnceOnReconnect() async throws {
        let harness = Harness()
        let online = Mutex(false)
        let delivered = Mutex<[String]>([])
        let body = reservationBody(quantity: 2)
        harness.http.setHandler { request in
            guard online.withLock({ $0 }) else { throw FakeHTTP.Unreachable() }
            let key = request.headers["Idempotency-Key"] ?? ""
            let first = delivered.withLock { keys in
                defer { keys.append(key) }
                return !keys.contains(key)
            }
            return HTTPResponse(status: first ? 201 : 200, body: body)
        }
        let (subscription, server) = try await connected(harness, available: 10)
        let client = harness.client
        let (event, type) = (self.event, self.type)
        let pending = Task { try await client.reserve(event: event, ticketType: type, quantity: 2, idempotencyKey: "key-1") }
        let optimistic = try await firstMatch(subscription, "waiting for the optimistic hold") { $0.ticketTypes.first?.available == 8 }
        #expect(optimistic.ticketTypes.first?.reserved == 2)
        #expect(optimistic.version == 1)
        try await withDeadline(.seconds(5), "waiting for the first (failed) attempt") {
            while harness.http.requests.isEmpty { await Task.yield() }
        }
        #expect(await client.queuedReservations == 1)
        // the network returns: the socket drops and reconnects, and the queue is sent on the rejoin
        online.withLock { $0 = true }
        server.connection.fail()
        try await harness.advance(past: .seconds(1))
        let again = try await harness.nextServer()
        _ = try await again.acceptJoin()
        let reservation = try await withDeadline(.seconds(5), "waiting for the reservation") { try await pending.value }
        #expect(reservation.quantity == 2)
        #expect(delivered.withLock { $0 } == ["key-1"])
        #expect(harness.http.requests.allSatisfy { $0.headers["Idempotency-Key"] == "key-1" && $0.headers["Authorization"] == "Bearer token-1" })
        #expect(await client.queuedReservations == 0)
        // the hold stays until the server's row includes it, then the server's numbers win
        #expect(await client.snapshot(event: event)?.ticketTypes.first?.available == 8)
        again.push(topic: topic, record: row(event: event, type: type, available: 8, version: 2))
        let settled = try await firstMatch(subscription, "waiting for the server's row") { $0.version == 2 }
        #expect(settled.ticketTypes.first?.available == 8)
        #expect(settled.ticketTypes.first?.reserved == 0)
        subscription.cancel()
    }

    @Test func cancellingAQueuedReservationWithdrawsItAndItsHold() async throws {
        let harness = Harness()
        harness.http.setHandler { _ in throw FakeHTTP.Unreachable() }
        let (subscription, _) = try await connected(harness, available: 10)
        let client = harness.client
        let (event, type) = (self.event, self.type)
        let pending = Task { try await client.reserve(event: event, ticketType: type, quantity: 3, idempotencyKey: "key-2") }
        _ = try await firstMatch(subscription, "waiting for the optimistic hold") { $0.ticketTypes.first?.available == 7 }
        try await withDeadline(.seconds(5), "waiting for the first (failed) attempt") {
            while harness.http.requests.isEmpty { await Task.yield() }
        }
        pending.cancel()
        await #expect(throws: ReservationError.cancelled) {
            try await withDeadline(.seconds(5), "waiting for the cancelled reservation") { try await pending.value }
        }
        #expect(await client.queuedReservations == 0)
        let rolledBack = try await firstMatch(subscription, "waiting for the rollback") { $0.ticketTypes.first?.available == 10 }
        #expect(rolledBack.ticketTypes.first?.reserved == 0)
        #expect(harness.http.requests.count == 1)
        subscription.cancel()
    }
}
