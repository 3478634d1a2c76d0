import Foundation
import MarqueeCore
import Testing

@testable import MarqueeServer

/// Public and private channels of one name share nothing; presence keeps one meta per connection; redaction follows
/// the channel's current token; the outbox is bounded in bytes.
@Suite struct HubIsolationTests {
    private func connect(_ hub: RealtimeHub, _ id: Int) -> ConnectionHandle {
        let connection = ConnectionHandle(id: id, serializer: .v1, outbox: Outbox(capacity: 4096))
        hub.register(connection)
        return connection
    }

    private func join(_ hub: RealtimeHub, _ connection: ConnectionHandle, _ topic: String, isPrivate: Bool, own: Bool = false) {
        hub.join(
            connectionID: connection.id, topic: topic, joinRef: "1", subscriptions: [],
            membership: .init(receiveOwnBroadcasts: own, isPrivate: isPrivate, replaySince: nil, replayLimit: 0))
    }

    private func events(_ outbox: Outbox) async throws -> [PhoenixMessage] {
        var messages: [PhoenixMessage] = []
        while outbox.depth > 0, let frame = await outbox.next() {
            if let text = frame.text { messages.append(try PhoenixSerializer.v1.decode(text)) }
        }
        return messages
    }

    @Test func broadcastsStayWithinTheirPrivacy() async throws {
        let hub = RealtimeHub()
        let owner = connect(hub, 1)
        let peer = connect(hub, 2)
        let snoop = connect(hub, 3)
        let topic = "realtime:user:alice:reservations"
        join(hub, owner, topic, isPrivate: true)
        join(hub, peer, topic, isPrivate: true)
        join(hub, snoop, topic, isPrivate: false)
        #expect(hub.broadcast(topic: topic, payload: .object(["event": "secret"]), from: owner.id))
        #expect(try await events(peer.outbox).map(\.event) == ["broadcast"])
        #expect(try await events(snoop.outbox).isEmpty)
        // and the other way: the public member's broadcast never reaches a private one
        #expect(hub.broadcast(topic: topic, payload: .object(["event": "forged"]), from: snoop.id))
        #expect(try await events(owner.outbox).isEmpty)
        #expect(try await events(peer.outbox).isEmpty)
    }

    @Test func presenceKeepsOneMetaPerConnectionAndStaysWithinItsPrivacy() async throws {
        let hub = RealtimeHub()
        let first = connect(hub, 1)
        let second = connect(hub, 2)
        let outsider = connect(hub, 3)
        let topic = "realtime:room"
        join(hub, first, topic, isPrivate: true)
        join(hub, second, topic, isPrivate: true)
        join(hub, outsider, topic, isPrivate: false)
        hub.trackPresence(topic: topic, key: "alice", connectionID: first.id, payload: ["device": "phone"])
        hub.trackPresence(topic: topic, key: "alice", connectionID: second.id, payload: ["device": "laptop"])
        let state = hub.presenceState(topic: topic, connectionID: first.id)
        let metas = try #require(state["alice"]?["metas"]?.arrayValue)
        #expect(metas.compactMap { $0["device"]?.stringValue } == ["phone", "laptop"])
        #expect(Set(metas.compactMap { $0["phx_ref"]?.stringValue }).count == 2)
        // the public member of the same name sees none of it
        #expect(hub.presenceState(topic: topic, connectionID: outsider.id) == .object([:]))
        #expect(try await events(outsider.outbox).isEmpty)
        // the second leaving takes only its own meta
        _ = try await events(first.outbox)
        hub.untrackPresence(topic: topic, connectionID: second.id)
        let after = try #require(hub.presenceState(topic: topic, connectionID: first.id)["alice"]?["metas"]?.arrayValue)
        #expect(after.compactMap { $0["device"]?.stringValue } == ["phone"])
        let diff = try #require(try await events(first.outbox).last)
        #expect(diff.event == "presence_diff")
        #expect(diff.payload["leaves"]?["alice"]?["metas"]?.arrayValue?.first?["device"] == "laptop")
        // leaving the channel removes what it tracked
        hub.leave(connectionID: first.id, topic: topic)
        #expect(hub.presenceState(topic: topic, connectionID: second.id) == .object([:]))
    }

    @Test func aRefreshedTokenChangesWhatTheBindingsSee() async throws {
        let hub = RealtimeHub()
        let connection = connect(hub, 1)
        let owner = Viewer(role: .authenticated, userID: "user-a")
        let filter = try ChangeFilter.parse("event_id=eq.e1")
        let subscription = Subscription(
            uid: 0, connection: 1, topic: "realtime:t", bindingID: 5, table: "public.tickets", events: .all, filter: filter, select: nil,
            viewer: owner)
        hub.join(
            connectionID: 1, topic: "realtime:t", joinRef: "1", subscriptions: [subscription],
            membership: .init(receiveOwnBroadcasts: false, isPrivate: false, replaySince: nil, replayLimit: 0))
        let change = RowChange(
            schema: "public", table: "tickets", kind: .insert, commitTimestamp: PgTimestamp(unixMicroseconds: 1_768_472_430_123_000),
            commitLSN: PgLSN(1), xid: 1,
            columns: [
                .init(name: "id", typeName: "uuid", typeOID: 2950, isKey: true), .init(name: "event_id", typeName: "text", typeOID: 25, isKey: false),
                .init(name: "user_id", typeName: "text", typeOID: 25, isKey: false),
                .init(name: "holder_email", typeName: "text", typeOID: 25, isKey: false),
            ],
            record: ["id": "t1", "event_id": "e1", "user_id": "user-a", "holder_email": "a@example.com"], oldRecord: nil)
        hub.publish(change)
        #expect(try await events(connection.outbox).first?.payload["data"]?["record"]?["holder_email"] == "a@example.com")
        #expect(hub.updateViewer(connectionID: 1, topic: "realtime:t", viewer: .anonymous).isEmpty)
        hub.publish(change)
        let redacted = try #require(try await events(connection.outbox).first?.payload["data"]?["record"]?.objectValue)
        #expect(redacted["holder_email"] == nil)
        #expect(redacted["user_id"] == nil)
        #expect(hub.subscriptionCount == 1)
    }

    @Test func aBindingTheNewTokenMayNotUseIsRemoved() throws {
        let hub = RealtimeHub()
        _ = connect(hub, 1)
        let owner = Viewer(role: .authenticated, userID: "user-a")
        let subscription = Subscription(
            uid: 0, connection: 1, topic: "realtime:t", bindingID: 9, table: "public.tickets", events: .all,
            filter: try ChangeFilter.parse("user_id=eq.user-a"), select: nil, viewer: owner)
        hub.join(
            connectionID: 1, topic: "realtime:t", joinRef: "1", subscriptions: [subscription],
            membership: .init(receiveOwnBroadcasts: false, isPrivate: false, replaySince: nil, replayLimit: 0))
        #expect(hub.updateViewer(connectionID: 1, topic: "realtime:t", viewer: .anonymous) == [9])
        #expect(hub.subscriptionCount == 0)
    }

    @Test func theOutboxIsBoundedInBytes() async {
        let outbox = Outbox(capacity: 100, maxBytes: 1000)
        let big = String(repeating: "x", count: 600)
        #expect(outbox.enqueue(.text(big)))
        #expect(!outbox.enqueue(.text(big)))
        #expect(outbox.overflowed)
        #expect(await outbox.next() == Outbox.overflowClose)
        // one frame larger than the cap still goes when nothing waits
        let single = Outbox(capacity: 100, maxBytes: 10)
        #expect(single.enqueue(.text(big)))
    }

    @Test func logTextEscapesControlCharacters() {
        #expect(LogText.escape("a\nb\u{1b}[31mc\\") == "a\\u{a}b\\u{1b}[31mc\\\\")
        #expect(LogText.escape(String(repeating: "z", count: 300), limit: 5) == "zzzzz…")
        #expect(RealtimeGateway.errorCode("InvalidJWTToken: Token has expired") == "InvalidJWTToken")
        #expect(RealtimeGateway.errorCode("unknown event 'pwn\\ned'") == "other")
    }
}
