import MarqueeCore
import Testing

@testable import MarqueeServer

/// `Subscribed to PostgreSQL` only while the change feed streams; joins made while it reconnects go live once it is back.
struct FeedGateTests {
    func subscribedNotice(topic: String, joinRef: String) -> PhoenixMessage {
        PhoenixMessage(
            joinRef: joinRef, topic: topic, event: "system", payload: FeedGate.payload(topic: topic, status: "ok", message: FeedGate.subscribed))
    }

    func joined(_ hub: RealtimeHub, id: Int, topic: String, joinRef: String) -> ConnectionHandle {
        let connection = ConnectionHandle(id: id, serializer: .v2, outbox: Outbox(capacity: 16))  // v2 frames carry the join_ref
        hub.register(connection)
        hub.join(connectionID: id, topic: topic, joinRef: joinRef, subscriptions: [], receiveOwnBroadcasts: false)
        return connection
    }

    @Test func whileLiveTheNoticePassesUnchanged() {
        let hub = RealtimeHub()
        let connection = joined(hub, id: 1, topic: "realtime:a", joinRef: "1")
        let notice = subscribedNotice(topic: "realtime:a", joinRef: "1")
        #expect(hub.feedGate.admit(notice, connection: connection) == notice)
    }

    @Test func otherMessagesAreNeverHeldBack() {
        let hub = RealtimeHub()
        hub.feedInterrupted()
        let connection = joined(hub, id: 1, topic: "realtime:a", joinRef: "1")
        let reply = PhoenixMessage(joinRef: "1", ref: "1", topic: "realtime:a", event: "phx_reply", payload: .object(["status": "ok"]))
        #expect(hub.feedGate.admit(reply, connection: connection) == reply)
        var refusal = subscribedNotice(topic: "realtime:a", joinRef: "1")
        refusal.payload = FeedGate.payload(topic: "realtime:a", status: "error", message: "Unauthorized")
        #expect(hub.feedGate.admit(refusal, connection: connection) == refusal)
    }

    @Test func aJoinWhileTheFeedReconnectsIsToldSoAndGoesLiveWhenItIsBack() async throws {
        let hub = RealtimeHub()
        hub.feedInterrupted()
        let waiting = joined(hub, id: 1, topic: "realtime:a", joinRef: "7")
        let left = joined(hub, id: 2, topic: "realtime:b", joinRef: "1")
        let told = hub.feedGate.admit(subscribedNotice(topic: "realtime:a", joinRef: "7"), connection: waiting)
        #expect(told.event == "system")
        #expect(told.payload["status"] == "error")
        #expect(told.payload["message"]?.stringValue?.contains("reconnecting") == true)
        _ = hub.feedGate.admit(subscribedNotice(topic: "realtime:b", joinRef: "1"), connection: left)
        hub.leave(connectionID: 2, topic: "realtime:b")

        hub.feedStreaming()
        let live = try #require(await waiting.outbox.next())
        let message = try PhoenixSerializer.v2.decode(try #require(live.text))
        #expect(message.topic == "realtime:a")
        #expect(message.joinRef == "7")
        #expect(message.payload["status"] == "ok")
        #expect(message.payload["message"] == "Subscribed to PostgreSQL")
        // the channel that left is not told anything
        #expect(left.outbox.depth == 0)
        // and later joins pass at once
        let notice = subscribedNotice(topic: "realtime:c", joinRef: "2")
        #expect(hub.feedGate.admit(notice, connection: waiting) == notice)
    }

    @Test func resyncClosesEverySocketWithReconnectAndResync() async throws {
        let hub = RealtimeHub()
        let a = joined(hub, id: 1, topic: "realtime:a", joinRef: "1")
        let b = joined(hub, id: 2, topic: "realtime:b", joinRef: "1")
        #expect(hub.resyncEveryone(reason: "slot lost: reconnect and resync") == 2)
        for connection in [a, b] {
            guard case .close(let code, let reason) = await connection.outbox.next() else { throw TestFailure("expected a close frame") }
            #expect(code == 1013)
            #expect(reason.contains("resync"))
        }
    }
}
