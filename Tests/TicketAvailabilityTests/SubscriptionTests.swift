import Foundation
import MarqueeCore
import Testing

import MarqueeServer
@testable import TicketAvailability

/// Waits until the client has processed everything the server sent so far, by sending a broken frame and waiting
/// for its report (frames are handled in order).
func fence(_ server: FakeServer, _ errors: AsyncStream<TicketAvailabilityError>) async throws {
    server.connection.push("fence")
    _ = try await firstMatch(errors, "waiting for the fence") { if case .malformedFrame = $0 { true } else { false } }
}

@Suite struct SubscriptionTests {
    let event = UUID()
    let type = UUID()
    var topic: String { ChannelTable.topic(for: event) }

    @Test func appliesRowsByVersionIgnoringStaleAndDuplicates() async throws {
        let harness = Harness()
        let errors = await harness.client.errors()
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        server.push(topic: topic, record: row(event: event, type: type, available: 50, version: 5), snapshot: true)
        server.push(topic: topic, record: row(event: event, type: type, available: 60, version: 4))
        server.push(topic: topic, record: row(event: event, type: type, available: 50, version: 5))
        server.push(topic: topic, record: row(event: event, type: type, available: 42, version: 7))
        server.push(topic: topic, record: row(event: event, type: type, available: 45, version: 6))
        try await fence(server, errors)
        var seen: [Int64] = []
        for await snapshot in subscription {
            seen.append(snapshot.version)
            if snapshot.version == 7 { break }
        }
        // latest-wins buffering may skip v5, but never shows a stale row
        #expect(seen.allSatisfy { $0 == 5 || $0 == 7 })
        #expect(await harness.client.snapshot(event: event)?.ticketTypes.map(\.available) == [42])
        subscription.cancel()
    }

    @Test func coalescesBurstsToOneUpdatePerInterval() async throws {
        let harness = Harness { $0.coalescingInterval = .milliseconds(100) }
        let errors = await harness.client.errors()
        let subscription = try await harness.client.subscribe(event: event)
        var updates = subscription.makeAsyncIterator()
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        server.push(topic: topic, record: row(event: event, type: type, available: 99, version: 1))
        let firstUpdate = await updates.next()
        #expect(firstUpdate?.version == 1)
        for version in 2...20 {
            server.push(topic: topic, record: row(event: event, type: type, available: 100 - Int(version), version: Int64(version)))
        }
        try await fence(server, errors)
        // nothing more is delivered until the interval ends; then exactly one update with the newest row
        #expect(await harness.client.snapshot(event: event)?.version == 20)
        #expect(await harness.client.deliveries == 1)
        try await harness.advance(past: .milliseconds(100))
        let folded = await updates.next()
        #expect(folded?.version == 20)
        #expect(folded?.ticketTypes.first?.available == 80)
        #expect(await harness.client.deliveries == 2)
        // a quiet interval passes with no delivery, and the next change is delivered at once
        try await harness.advance(past: .milliseconds(100))
        server.push(topic: topic, record: row(event: event, type: type, available: 79, version: 21))
        let next = await updates.next()
        #expect(next?.version == 21)
        subscription.cancel()
    }

    @Test func handlesShareOneChannelAndTheLastOneLeaves() async throws {
        let harness = Harness()
        let statuses = await harness.client.statusUpdates()
        let a = try await harness.client.subscribe(event: event)
        let b = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        let join = try await server.acceptJoin()
        let errors = await harness.client.errors()
        try await fence(server, errors)
        #expect(await harness.client.subscribedEvents == [event])
        a.cancel()
        // still used by b: no leave
        server.push(topic: topic, record: row(event: event, type: type, available: 3, version: 1))
        var iterator = b.makeAsyncIterator()
        #expect(await iterator.next()?.version == 1)
        #expect(!server.connection.unreadFromClient.contains { $0.contains("phx_leave") })
        b.cancel()
        let leave = try await server.next("phx_leave")
        #expect(leave.topic == topic && leave.joinRef == join.joinRef)
        _ = try await firstMatch(statuses, "waiting for the client to go idle") { $0 == .disconnected(reason: "no subscriptions") }
        #expect(await harness.client.subscribedEvents.isEmpty)
    }

    @Test func aDeinitializedHandleReleasesItsChannel() async throws {
        let harness = Harness()
        var handle: AvailabilitySubscription? = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        #expect(handle != nil)
        handle = nil
        _ = try await withDeadline(.seconds(5), "waiting for the leave") { try await server.next("phx_leave") }
        #expect(await harness.client.subscribedEvents.isEmpty)
    }

    @Test func limitsDistinctEventsPerClient() async throws {
        let harness = Harness { $0.maxSubscriptions = 2 }
        let a = try await harness.client.subscribe(event: UUID())
        let b = try await harness.client.subscribe(event: event)
        let again = try await harness.client.subscribe(event: event)
        await #expect(throws: TicketAvailabilityError.subscriptionLimitReached(limit: 2)) {
            try await harness.client.subscribe(event: UUID())
        }
        a.cancel()
        let server = try await harness.nextServer()
        _ = server
        // a slot is free again once a's release has run
        let c = try await withDeadline(.seconds(5), "waiting for a free slot") {
            while true {
                do { return try await harness.client.subscribe(event: UUID()) } catch { await Task.yield() }
            }
        }
        for handle in [b, again, c] { handle.cancel() }
    }

    @Test func malformedFramesAndPayloadsAreReportedAndSkipped() async throws {
        let harness = Harness()
        let errors = await harness.client.errors()
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        server.push(topic: topic, record: row(event: event, type: type, available: 10, version: 3))
        server.connection.push("{not json")
        server.connection.push("[1,2]")
        server.connection.push(#"[null,null,"\#(topic)","postgres_changes",{"ids":[1],"data":{"record":{"id":"x"}}}]"#)
        server.connection.push(#"[null,null,"\#(topic)","postgres_changes",{"ids":[1]}]"#)
        server.connection.push(#"[null,null,"\#(topic)","postgres_changes",[1,2,3]]"#)
        var broken = row(event: event, type: type, available: 0, version: 9)
        broken["available"] = "lots"
        server.push(topic: topic, record: broken)
        server.push(topic: topic, record: row(event: event, type: type, available: 8, version: 4))
        var reported: [TicketAvailabilityError] = []
        for await error in errors {
            reported.append(error)
            if reported.count == 6 { break }
        }
        #expect(reported.filter { if case .malformedFrame = $0 { true } else { false } }.count == 2)
        #expect(reported.filter { if case .invalidPayload = $0 { true } else { false } }.count == 4)
        let latest = try await firstMatch(subscription, "waiting for v4") { $0.version == 4 }
        #expect(latest.ticketTypes.map(\.available) == [8])
        #expect(!server.connection.isClosed)
        subscription.cancel()
    }
}
