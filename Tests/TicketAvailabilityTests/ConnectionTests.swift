import Foundation
import MarqueeCore
import Testing

import MarqueeServer
@testable import TicketAvailability

@Suite struct MachineTests {
    @Test func backoffDoublesUpToTheCapAndJitterShortens() {
        let backoff = Backoff(base: .seconds(1), cap: .seconds(30), jitter: 0.5)
        let schedule = (1...7).map { backoff.delay(attempt: $0, random: 0) }
        #expect(schedule == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
        #expect(backoff.delay(attempt: 3, random: 1) == .seconds(2))
        #expect(backoff.delay(attempt: 3, random: 0.5) == .seconds(3))
        #expect(backoff.delay(attempt: 1000, random: 0) == .seconds(30))
    }

    @Test func heartbeatNeedsTheMatchingReply() {
        var heartbeat = HeartbeatMachine()
        heartbeat.sent(ref: "7")
        let wrong = heartbeat.replied(ref: "6")
        #expect(!wrong)
        #expect(heartbeat.deadlinePassed(ref: "7") == .timedOut)
        let right = heartbeat.replied(ref: "7")
        #expect(right)
        #expect(heartbeat.deadlinePassed(ref: "7") == .answered)
    }

    @Test func coalescerDeliversFirstAndFoldsTheRest() {
        var coalescer = Coalescer()
        let actions = [
            coalescer.changed(), coalescer.changed(), coalescer.changed(), coalescer.timerFired(), coalescer.timerFired(), coalescer.changed(),
        ]
        #expect(actions == [.deliverAndStartTimer, .none, .none, .deliverAndStartTimer, .none, .deliverAndStartTimer])
    }

    @Test func manualClockWakesSleepersInOrderOnlyWhenAdvanced() async throws {
        let clock = ManualClock()
        let woke = AsyncFrameQueue<Int>()
        let a = Task {
            try await clock.sleep(for: .seconds(2))
            woke.push(2)
        }
        let b = Task {
            try await clock.sleep(for: .seconds(1))
            woke.push(1)
        }
        await clock.waitForSleeper(remaining: .seconds(2))
        await clock.waitForSleeper(remaining: .seconds(1))
        clock.advance(by: .milliseconds(999))
        #expect(woke.pending.isEmpty)
        clock.advance(by: .milliseconds(1))
        let first = try await withDeadline(.seconds(5), "the 1 s sleeper") { try await woke.next() }
        #expect(first == 1)
        clock.advance(by: .seconds(1))
        let second = try await withDeadline(.seconds(5), "the 2 s sleeper") { try await woke.next() }
        #expect(second == 2)
        try await a.value
        try await b.value
    }
}

@Suite struct ConnectionTests {
    let event = UUID()
    var topic: String { ChannelTable.topic(for: event) }

    @Test func joinsWithBindingsSnapshotAndToken() async throws {
        let harness = Harness()
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        #expect(server.connection.url == "ws://marquee.test/realtime/v1/websocket?apikey=token-1&vsn=2.0.0")
        let join = try await server.acceptJoin()
        #expect(join.topic == topic)
        #expect(join.payload["access_token"]?.stringValue == "token-1")
        #expect(join.payload["config"]?["marquee"]?["snapshot"]?.boolValue == true)
        let binding = join.payload["config"]?["postgres_changes"]?.arrayValue?.first
        #expect(binding?["table"]?.stringValue == "event_tickets")
        #expect(binding?["filter"]?.stringValue == "event_id=eq.\(event.lowercased)")
        subscription.cancel()
    }

    @Test func heartbeatTimeoutDropsTheSocketAndReconnects() async throws {
        let harness = Harness {
            $0.heartbeatInterval = .seconds(25)
            $0.heartbeatTimeout = .seconds(7)
            $0.reconnectBaseDelay = .seconds(3)
        }
        let statuses = await harness.client.statusUpdates()
        let errors = await harness.client.errors()
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        // answered heartbeats keep the socket
        try await harness.advance(past: .seconds(25))
        let first = try await server.next("heartbeat")
        #expect(first.topic == "phoenix")
        server.send(
            PhoenixMessage(ref: first.ref, topic: "phoenix", event: "phx_reply", payload: .object(["status": "ok", "response": .object([:])])))
        server.connection.push("fence")
        _ = try await firstMatch(errors, "waiting for the fence") { if case .malformedFrame = $0 { true } else { false } }
        try await harness.advance(past: .seconds(7))
        try await harness.advance(past: .seconds(25))
        _ = try await server.next("heartbeat")
        #expect(!server.connection.isClosed)
        // an unanswered one ends it
        try await harness.advance(past: .seconds(7))
        _ = try await firstMatch(errors, "waiting for the heartbeat timeout") { $0 == .heartbeatTimeout }
        _ = try await firstMatch(statuses, "waiting for reconnecting") { $0 == .reconnecting(attempt: 1) }
        try await harness.advance(past: .seconds(3))
        let second = try await harness.nextServer()
        _ = try await second.acceptJoin()
        _ = try await firstMatch(statuses, "waiting for connected again") { $0 == .connected }
        #expect(harness.transport.attempts == 2)
        subscription.cancel()
    }

    @Test func aDeadSocketThatNeverFinishesClosingDoesNotDelayTheReconnect() async throws {
        let harness = Harness {
            $0.heartbeatInterval = .seconds(25)
            $0.heartbeatTimeout = .seconds(7)
            $0.reconnectBaseDelay = .seconds(3)
        }
        harness.transport.closingHangs = true
        let statuses = await harness.client.statusUpdates()
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        try await harness.advance(past: .seconds(25))
        _ = try await server.next("heartbeat")
        try await harness.advance(past: .seconds(7))
        // the old socket is still closing (and will be until the end of the test), yet the client goes on
        _ = try await firstMatch(statuses, "waiting for reconnecting") { $0 == .reconnecting(attempt: 1) }
        try await harness.advance(past: .seconds(3))
        _ = try await harness.nextServer().acceptJoin()
        _ = try await firstMatch(statuses, "waiting for connected again") { $0 == .connected }
        subscription.cancel()
        harness.transport.finishClosing()
    }

    @Test func aRefusedJoinIsRetriedWithBackoffOnTheSameSocket() async throws {
        let harness = Harness {
            $0.reconnectBaseDelay = .seconds(2)
            $0.maxReconnectDelay = .seconds(5)
        }
        let errors = await harness.client.errors()
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        for (attempt, delay) in [(1, 2), (2, 4), (3, 5)] {
            let join = try await server.next("phx_join")
            server.send(
                PhoenixMessage(
                    joinRef: join.joinRef, ref: join.ref, topic: join.topic, event: "phx_reply",
                    payload: .object(["status": "error", "response": .object(["reason": "too many channels"])])))
            let refused = try await firstMatch(errors, "waiting for refusal \(attempt)") { if case .joinRefused = $0 { true } else { false } }
            #expect(refused == .joinRefused(event: event, reason: "too many channels"))
            try await harness.advance(past: .seconds(delay))
        }
        let accepted = try await server.acceptJoin()
        #expect(accepted.topic == topic)
        server.push(topic: topic, record: row(event: event, type: UUID(), available: 4, version: 1), snapshot: true)
        _ = try await firstMatch(subscription, "waiting for the picture after the join") { $0.ticketTypes.first?.available == 4 }
        // the server drops the channel later: after the first delay again (the count was reset by the success)
        server.send(PhoenixMessage(joinRef: accepted.joinRef, topic: topic, event: "phx_error"))
        try await harness.advance(past: .seconds(2))
        _ = try await server.acceptJoin()
        #expect(harness.transport.attempts == 1)
        subscription.cancel()
    }

    @Test func backoffGrowsWhileConnectionsFailAndResetsAfterSuccess() async throws {
        let harness = Harness {
            $0.reconnectBaseDelay = .seconds(1)
            $0.maxReconnectDelay = .seconds(4)
            $0.pollAfterFailures = 100
        }
        harness.transport.mode = .refuse
        let statuses = await harness.client.statusUpdates()
        let subscription = try await harness.client.subscribe(event: event)
        for (attempt, delay) in [(1, 1), (2, 2), (3, 4), (4, 4)] {
            _ = try await firstMatch(statuses, "waiting for attempt \(attempt)") { $0 == .reconnecting(attempt: attempt) }
            #expect(harness.transport.attempts == attempt)
            if attempt == 4 { harness.transport.mode = .accept }
            try await harness.advance(past: .seconds(delay))
        }
        let server = try await harness.nextServer()
        _ = try await server.acceptJoin()
        _ = try await firstMatch(statuses, "waiting for connected") { $0 == .connected }
        server.connection.close()
        // after a healthy session the schedule starts again at the base delay
        _ = try await firstMatch(statuses, "waiting for reconnecting after success") { $0 == .reconnecting(attempt: 1) }
        try await harness.advance(past: .seconds(1))
        _ = try await harness.nextServer()
        subscription.cancel()
    }

    @Test func connectTimeoutAbandonsAHangingAttempt() async throws {
        let harness = Harness {
            $0.connectTimeout = .seconds(9)
            $0.reconnectBaseDelay = .seconds(2)
        }
        harness.transport.mode = .hang
        let statuses = await harness.client.statusUpdates()
        let subscription = try await harness.client.subscribe(event: event)
        try await harness.advance(past: .seconds(9))
        _ = try await firstMatch(statuses, "waiting for reconnecting") { $0 == .reconnecting(attempt: 1) }
        harness.transport.mode = .accept
        try await harness.advance(past: .seconds(2))
        _ = try await harness.nextServer().acceptJoin()
        subscription.cancel()
    }

    @Test func rejoinsEveryChannelAfterReconnect() async throws {
        let harness = Harness()
        let events = [UUID(), UUID(), UUID()]
        var subscriptions: [AvailabilitySubscription] = []
        for event in events { subscriptions.append(try await harness.client.subscribe(event: event)) }
        let server = try await harness.nextServer()
        var joined: Set<String> = []
        for _ in events { joined.insert(try await server.acceptJoin().topic) }
        #expect(joined == Set(events.map(ChannelTable.topic(for:))))
        server.connection.fail()
        try await harness.advance(past: .seconds(1))
        let again = try await harness.nextServer()
        var rejoined: [PhoenixMessage] = []
        for _ in events { rejoined.append(try await again.acceptJoin()) }
        #expect(Set(rejoined.map(\.topic)) == joined)
        for join in rejoined {
            #expect(join.payload["config"]?["postgres_changes"]?.arrayValue?.count == 1)
            #expect(join.payload["config"]?["marquee"]?["snapshot"]?.boolValue == true)
        }
        for subscription in subscriptions { subscription.cancel() }
    }

    @Test func tokenRefreshReachesJoinedChannelsAndLaterConnections() async throws {
        let harness = Harness()
        let subscription = try await harness.client.subscribe(event: event)
        let server = try await harness.nextServer()
        let join = try await server.acceptJoin()
        // make sure the reply was processed: wait for a frame after it
        let errors = await harness.client.errors()
        server.connection.push("not json")
        _ = try await firstMatch(errors, "waiting for the fence") { if case .malformedFrame = $0 { true } else { false } }
        await harness.client.setAccessToken("token-2")
        let refresh = try await server.next("access_token")
        #expect(refresh.topic == topic && refresh.joinRef == join.joinRef)
        #expect(refresh.payload["access_token"]?.stringValue == "token-2")
        server.connection.close()
        try await harness.advance(past: .seconds(1))
        let again = try await harness.nextServer()
        #expect(again.connection.url.contains("apikey=token-2"))
        #expect(try await again.acceptJoin().payload["access_token"]?.stringValue == "token-2")
        subscription.cancel()
    }
}
