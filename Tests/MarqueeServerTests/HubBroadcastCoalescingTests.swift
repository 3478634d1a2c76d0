import Foundation
import MarqueeCore
import Testing

@testable import MarqueeServer

private let event = "0b7f4c52-8a8e-4c3c-9b51-0d1f2a3b4c5d"
private let typeA = "a1a1a1a1-0000-4000-8000-000000000001"
private let typeB = "b2b2b2b2-0000-4000-8000-000000000002"
private let availabilityTopic = "event:\(event):availability"

/// A row of `realtime.messages` as the change feed hands it on, written by the ticket types' trigger.
private func stored(
    _ eventName: String = "availability", type: String = typeA, version: Int64, topic: String = availabilityTopic, isPrivate: Bool = false
) -> JSONObject {
    [
        "id": .string(UUID().uuidString.lowercased()), "topic": .string(topic), "extension": "broadcast", "event": .string(eventName),
        "private": .bool(isPrivate),
        "payload": .object(["ticket_type_id": .string(type), "event_id": .string(event), "available": .int(1000 - version), "version": .int(version)]
        ),
    ]
}

@Suite struct HubBroadcastCoalescingTests {
    let timer = ManualCoalescingTimer()

    func makeHub(interval: Duration = .milliseconds(100)) -> RealtimeHub {
        RealtimeHub(coalescing: .init(interval: interval, timer: timer))
    }

    /// A socket with one channel on `topic` (public unless said), joined as the session would join it.
    func member(_ hub: RealtimeHub, _ id: Int, topic: String = availabilityTopic, isPrivate: Bool = false, coalesce: Bool = true) -> ConnectionHandle
    {
        let connection = ConnectionHandle(id: id, serializer: .v1, outbox: Outbox(capacity: 4096))
        hub.register(connection)
        hub.join(
            connectionID: id, topic: "realtime:\(topic)", joinRef: "1", subscriptions: [],
            membership: .init(receiveOwnBroadcasts: false, isPrivate: isPrivate, replaySince: nil, replayLimit: 0, coalesce: coalesce))
        return connection
    }

    /// The broadcasts a connection received so far, as "event:type:version" ("status:A:7").
    func received(_ connection: ConnectionHandle) async throws -> [String] {
        var seen: [String] = []
        while connection.outbox.depth > 0, let frame = await connection.outbox.next() {
            let message = try PhoenixSerializer.v1.decode(try #require(frame.text))
            guard message.event == "broadcast", let inner = message.payload["payload"] else { continue }
            let type = inner["ticket_type_id"]?.stringValue == typeA ? "A" : "B"
            seen.append("\(message.payload["event"]?.stringValue ?? "?"):\(type):\(inner["version"]?.intValue ?? -1)")
        }
        return seen
    }

    @Test func availabilityBroadcastsOfATicketTypeReachWatchersAtMostOncePerWindowTheNewestLast() async throws {
        let hub = makeHub()
        let watcher = member(hub, 1)
        let optedOut = member(hub, 2, coalesce: false)

        hub.publishDatabaseBroadcast(stored(version: 2))  // the first goes at once
        for version in 3...5 {
            timer.advance(by: .milliseconds(15))
            hub.publishDatabaseBroadcast(stored(version: Int64(version)))
        }
        hub.publishDatabaseBroadcast(stored(type: typeB, version: 9))  // another ticket type has a window of its own
        hub.publishDatabaseBroadcast(stored("status", version: 5))  // a status change is never held back
        #expect(try await received(watcher) == ["availability:A:2", "availability:B:9", "status:A:5"])
        #expect(
            try await received(optedOut) == [
                "availability:A:2", "availability:A:3", "availability:A:4", "availability:A:5", "availability:B:9", "status:A:5",
            ])
        #expect(hub.coalescingRows == (open: 2, pending: 1))

        timer.advance(by: .milliseconds(55))  // 100 ms: A's window ends with its newest version; 3 and 4 never go
        #expect(try await received(watcher) == ["availability:A:5"])
        #expect(try await received(optedOut).isEmpty)

        hub.publishDatabaseBroadcast(stored(version: 6))  // in A's second window (100–200 ms)
        timer.advance(by: .milliseconds(99))
        #expect(try await received(watcher).isEmpty)
        timer.advance(by: .milliseconds(1))
        #expect(try await received(watcher) == ["availability:A:6"])
        #expect(try await received(optedOut) == ["availability:A:6"])

        // quiet windows end with nothing to send: the next broadcast goes at once
        timer.advance(by: .milliseconds(300))
        #expect(hub.coalescingRows == (open: 0, pending: 0))
        hub.publishDatabaseBroadcast(stored(version: 7))
        #expect(try await received(watcher) == ["availability:A:7"])
    }

    @Test func otherTopicsEventsAndPrivateBroadcastsAreNeverHeldBack() async throws {
        let hub = makeHub()
        let otherTopic = "room:lobby"
        let lobby = member(hub, 1, topic: otherTopic)
        let privateWatcher = member(hub, 2, isPrivate: true)
        let userTopic = "user:u1:reservations"
        let reservations = member(hub, 3, topic: userTopic, isPrivate: true)
        let publicWatcher = member(hub, 4)
        for version in 2...4 {
            hub.publishDatabaseBroadcast(stored(version: Int64(version), topic: otherTopic))
            hub.publishDatabaseBroadcast(stored(version: Int64(version), isPrivate: true))
            hub.publishDatabaseBroadcast(stored("created", version: Int64(version), topic: userTopic, isPrivate: true))
            hub.publishDatabaseBroadcast(stored("notice", version: Int64(version)))  // another event on the availability topic
        }
        #expect(try await received(lobby) == ["availability:A:2", "availability:A:3", "availability:A:4"])
        #expect(try await received(privateWatcher) == ["availability:A:2", "availability:A:3", "availability:A:4"])
        #expect(try await received(reservations) == ["created:A:2", "created:A:3", "created:A:4"])
        #expect(try await received(publicWatcher) == ["notice:A:2", "notice:A:3", "notice:A:4"])
        #expect(hub.coalescingRows == (open: 0, pending: 0))
        #expect(timer.pendingTimers == 0)
    }

    @Test func aWatcherJoiningDuringAWindowGetsItsNewestVersionAndOneLeavingGetsNothingMore() async throws {
        let hub = makeHub()
        let leaving = member(hub, 1)
        let staying = member(hub, 2)
        hub.publishDatabaseBroadcast(stored(version: 2))
        hub.publishDatabaseBroadcast(stored(version: 3))
        hub.leave(connectionID: 1, topic: "realtime:\(availabilityTopic)")
        let late = member(hub, 3)
        timer.advance(by: .milliseconds(100))
        #expect(try await received(leaving) == ["availability:A:2"])
        #expect(try await received(staying) == ["availability:A:2", "availability:A:3"])
        #expect(try await received(late) == ["availability:A:3"])
    }

    @Test func aTopicNobodyWatchesOpensNoWindow() {
        let hub = makeHub()
        for version in 2...4 { hub.publishDatabaseBroadcast(stored(version: Int64(version))) }
        #expect(hub.coalescingRows == (open: 0, pending: 0))
        #expect(timer.pendingTimers == 0)
    }

    @Test func withoutCoalescingEveryBroadcastGoesOut() async throws {
        let hub = makeHub(interval: .zero)
        let watcher = member(hub, 1)
        for version in 2...4 { hub.publishDatabaseBroadcast(stored(version: Int64(version))) }
        #expect(try await received(watcher) == ["availability:A:2", "availability:A:3", "availability:A:4"])
        #expect(timer.pendingTimers == 0)
    }
}
