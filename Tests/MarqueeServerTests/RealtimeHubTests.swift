import Foundation
import MarqueeCore
import Testing

@testable import MarqueeServer

// MARK: - Fixtures

private let eventA = "0b7f4c52-8a8e-4c3c-9b51-0d1f2a3b4c5d"
private let eventB = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
private let typeA = "a1a1a1a1-0000-4000-8000-000000000001"
/// 2026-01-15T10:20:30.123Z
private let commit = PgTimestamp(unixMicroseconds: 1_768_472_430_123_000)

private let ticketTypeColumns: [RowChange.Column] = [
    .init(name: "id", typeName: "uuid", typeOID: 2950, isKey: true),
    .init(name: "event_id", typeName: "uuid", typeOID: 2950, isKey: false),
    .init(name: "name", typeName: "text", typeOID: 25, isKey: false),
    .init(name: "capacity", typeName: "int4", typeOID: 23, isKey: false),
    .init(name: "available", typeName: "int4", typeOID: 23, isKey: false),
    .init(name: "version", typeName: "int8", typeOID: 20, isKey: false),
]

private func ticketTypeRow(event: String, available: Int64, version: Int64) -> JSONObject {
    ["id": .string(typeA), "event_id": .string(event), "name": "GA", "capacity": 100, "available": .int(available), "version": .int(version)]
}

private func ticketTypeChange(_ kind: RowChange.Kind, event: String = eventA, available: Int64 = 98, version: Int64 = 2) -> RowChange {
    let new = ticketTypeRow(event: event, available: available, version: version)
    let old = ticketTypeRow(event: event, available: available + 2, version: version - 1)
    return RowChange(
        schema: "public", table: "event_tickets", kind: kind, commitTimestamp: commit, commitLSN: PgLSN(0x1_0000_0100), xid: 900,
        columns: ticketTypeColumns, record: kind == .delete ? nil : new, oldRecord: kind == .insert ? nil : old)
}

private let ticketColumns: [RowChange.Column] = [
    .init(name: "id", typeName: "uuid", typeOID: 2950, isKey: true),
    .init(name: "event_id", typeName: "uuid", typeOID: 2950, isKey: false),
    .init(name: "user_id", typeName: "text", typeOID: 25, isKey: false),
    .init(name: "holder_email", typeName: "text", typeOID: 25, isKey: false),
    .init(name: "quantity", typeName: "int4", typeOID: 23, isKey: false),
    .init(name: "status", typeName: "text", typeOID: 25, isKey: false),
]

private func ticketInsert(owner: String) -> RowChange {
    RowChange(
        schema: "public", table: "tickets", kind: .insert, commitTimestamp: commit, commitLSN: PgLSN(0x2_0000_0000), xid: 901,
        columns: ticketColumns,
        record: [
            "id": "c0c0c0c0-0000-4000-8000-000000000009", "event_id": .string(eventA), "user_id": .string(owner),
            "holder_email": "buyer@example.com", "quantity": 2, "status": "reserved",
        ], oldRecord: nil)
}

private func binding(_ table: String = "event_tickets", event: String = "*", filter: String? = nil) -> JSONObject {
    var object: JSONObject = ["event": .string(event), "schema": "public", "table": .string(table)]
    if let filter { object["filter"] = .string(filter) }
    return object
}

/// A hub connection with its own outbox, registered.
private func connect(_ hub: RealtimeHub, _ id: Int, _ serializer: PhoenixSerializer = .v1, capacity: Int = 4096) -> ConnectionHandle {
    let connection = ConnectionHandle(id: id, serializer: serializer, outbox: Outbox(capacity: capacity))
    hub.register(connection)
    return connection
}

/// Joins through a session, as the gateway does, and indexes the resulting subscriptions; returns the binding ids.
@discardableResult
private func subscribe(
    _ hub: RealtimeHub, _ connection: ConnectionHandle, _ topic: String, _ bindings: [JSONObject], viewer: Viewer = userA
) throws -> [Int64] {
    var session = RealtimeSession(connectionID: connection.id, connectToken: .valid(viewer, expiresAt: nil), policy: hub.policy)
    var ids: [Int64] = []
    for action in session.receive(joinMessage(topic, ref: "1", bindings: bindings)) {
        switch action {
        case .send(let message) where message.event == "phx_reply":
            ids = message.payload["response"]?["postgres_changes"]?.arrayValue?.compactMap { $0["id"]?.intValue } ?? []
        case .send(let message) where message.event == "system":
            guard message.payload["status"] == "ok" else { throw TestFailure("join refused: \(message.payload.serialized())") }
        case .subscribe(let topic, let joinRef, let subscriptions, let membership):
            hub.join(connectionID: connection.id, topic: topic, joinRef: joinRef, subscriptions: subscriptions, membership: membership)
        default:
            break
        }
    }
    return ids
}

/// The value of a metric in the hub's registry (0 when the series does not exist).
func counted(_ hub: RealtimeHub, _ name: String, _ labels: [String: String] = [:]) -> Int {
    Int(hub.metrics.registry.value(name, labels) ?? 0)
}

/// Everything queued on an outbox, without waiting.
private func drain(_ outbox: Outbox) async -> [OutboundFrame] {
    var frames: [OutboundFrame] = []
    while outbox.depth > 0, let frame = await outbox.next() { frames.append(frame) }
    return frames
}

private func texts(_ outbox: Outbox) async -> [String] {
    await drain(outbox).compactMap(\.text)
}

private func decode(_ text: String, _ serializer: PhoenixSerializer = .v1) throws -> PhoenixMessage { try serializer.decode(text) }

// MARK: - Delivery

@Suite struct RealtimeHubDeliveryTests {
    @Test func updateReachesAMatchingSubscriptionWithTheSupabaseShape() async throws {
        let hub = RealtimeHub()
        let socket = connect(hub, 1)
        let ids = try subscribe(hub, socket, "realtime:event-a", [binding(event: "UPDATE", filter: "event_id=eq.\(eventA)")])
        #expect(ids.count == 1)
        hub.publish(ticketTypeChange(.update))
        let frames = await texts(socket.outbox)
        #expect(frames.count == 1)
        let message = try decode(try #require(frames.first))
        #expect(message.topic == "realtime:event-a")
        #expect(message.event == "postgres_changes")
        #expect(message.ref == nil)
        #expect(frames.first?.hasSuffix(#","ref":null}"#) == true)
        #expect(message.payload["ids"] == .array(ids.map { .int($0) }))
        let data = try #require(message.payload["data"]?.objectValue)
        #expect(data["schema"] == "public")
        #expect(data["table"] == "event_tickets")
        #expect(data["type"] == "UPDATE")
        #expect(data["commit_timestamp"] == "2026-01-15T10:20:30.123Z")
        #expect(sortingKeys(data["columns"]?.arrayValue?.first) == .object(["name": "id", "type": "uuid"]))
        #expect(data["columns"]?.arrayValue?.count == ticketTypeColumns.count)
        #expect(sortingKeys(data["record"]) == sortingKeys(.object(ticketTypeRow(event: eventA, available: 98, version: 2))))
        #expect(sortingKeys(data["old_record"]) == sortingKeys(.object(ticketTypeRow(event: eventA, available: 100, version: 1))))
        // on the wire, records keep the table's column order and the data keys come in Supabase's order
        let text = try #require(frames.first)
        #expect(text.contains(#""record":{"id":"\#(typeA)","event_id":"\#(eventA)","name":"GA","capacity":100,"available":98,"version":2}"#))
        #expect(text.hasPrefix(#"{"topic":"realtime:event-a","event":"postgres_changes","payload":{"ids":["#))
        #expect(
            text.contains(
                #""data":{"schema":"public","table":"event_tickets","commit_timestamp":"2026-01-15T10:20:30.123Z","type":"UPDATE","columns":[{"name":"id","type":"uuid"},"#
            ))
        #expect(data["errors"] == .null)
        #expect(data.keys.contains("errors"))
    }

    @Test func insertHasNoOldRecordAndDeleteHasNoRecord() async throws {
        let hub = RealtimeHub()
        let socket = connect(hub, 1, .v2)
        try subscribe(hub, socket, "realtime:all", [binding()])
        hub.publish([ticketTypeChange(.insert), ticketTypeChange(.delete)])
        let frames = await texts(socket.outbox)
        #expect(frames.count == 2)
        let insert = try #require(try decode(frames[0], .v2).payload["data"]?.objectValue)
        #expect(insert["type"] == "INSERT")
        #expect(insert["record"] != nil)
        #expect(!insert.keys.contains("old_record"))
        let delete = try #require(try decode(frames[1], .v2).payload["data"]?.objectValue)
        #expect(delete["type"] == "DELETE")
        #expect(!delete.keys.contains("record"))
        #expect(sortingKeys(delete["old_record"]) == sortingKeys(.object(ticketTypeRow(event: eventA, available: 100, version: 1))))
        // v2 fan-out frames carry neither join_ref nor ref
        #expect(frames[0].hasPrefix(#"[null,null,"realtime:all","postgres_changes",{"ids":["#))
    }

    @Test func nonMatchingSubscribersGetNothing() async throws {
        let hub = RealtimeHub()
        let matching = connect(hub, 1)
        let otherEvent = connect(hub, 2)
        let insertsOnly = connect(hub, 3)
        let otherTable = connect(hub, 4)
        try subscribe(hub, matching, "realtime:a", [binding(filter: "event_id=eq.\(eventA)")])
        try subscribe(hub, otherEvent, "realtime:b", [binding(filter: "event_id=eq.\(eventB)")])
        try subscribe(hub, insertsOnly, "realtime:ins", [binding(event: "INSERT", filter: "event_id=eq.\(eventA)")])
        try subscribe(hub, otherTable, "realtime:events", [binding("events")])
        hub.publish(ticketTypeChange(.update))
        #expect(matching.outbox.depth == 1)
        #expect(otherEvent.outbox.depth == 0)
        #expect(insertsOnly.outbox.depth == 0)
        #expect(otherTable.outbox.depth == 0)
        // a filter that is not an eq (scanned, not indexed) is applied too
        let lowStock = connect(hub, 5)
        try subscribe(hub, lowStock, "realtime:low", [binding(filter: "available=lt.10")])
        hub.publish(ticketTypeChange(.update, available: 50))
        hub.publish(ticketTypeChange(.update, available: 5))
        let frames = await texts(lowStock.outbox)
        #expect(frames.count == 1)
        #expect(try decode(frames[0]).payload["data"]?["record"]?["available"] == 5)
    }

    @Test func oneFramePerChannelListsEveryMatchingBinding() async throws {
        let hub = RealtimeHub()
        let socket = connect(hub, 1)
        let ids = try subscribe(
            hub, socket, "realtime:a", [binding(filter: "event_id=eq.\(eventA)"), binding(event: "UPDATE"), binding(filter: "event_id=eq.\(eventB)")])
        hub.publish(ticketTypeChange(.update))
        let frames = await texts(socket.outbox)
        #expect(frames.count == 1)
        #expect(try decode(frames[0]).payload["ids"] == .array([ids[0], ids[1]].sorted().map { .int($0) }))
    }

    @Test func leaveAndUnregisterStopDelivery() async throws {
        let hub = RealtimeHub()
        let left = connect(hub, 1)
        let gone = connect(hub, 2)
        try subscribe(hub, left, "realtime:a", [binding()])
        try subscribe(hub, gone, "realtime:a", [binding()])
        #expect(hub.subscriptionCount == 2)
        hub.leave(connectionID: 1, topic: "realtime:a")
        hub.unregister(2)
        hub.publish(ticketTypeChange(.update))
        #expect(left.outbox.depth == 0)
        #expect(gone.outbox.depth == 0)
        #expect(hub.subscriptionCount == 0)
        #expect(hub.connectionCount == 1)
        #expect(hub.subscriptionsByTable().isEmpty && counted(hub, "marquee_realtime_subscriptions", ["table": "public.event_tickets"]) == 0)
    }

    @Test func ticketHolderDetailsOnlyReachTheOwner() async throws {
        let hub = RealtimeHub()
        let owner = connect(hub, 1)
        let stranger = connect(hub, 2)
        let service = connect(hub, 3)
        try subscribe(hub, owner, "realtime:mine", [binding("tickets", filter: "user_id=eq.user-a")], viewer: userA)
        try subscribe(
            hub, stranger, "realtime:event", [binding("tickets", filter: "event_id=eq.\(eventA)")],
            viewer: Viewer(role: .authenticated, userID: "user-b"))
        try subscribe(hub, service, "realtime:admin", [binding("tickets")], viewer: Viewer(role: .serviceRole, userID: nil))
        hub.publish(ticketInsert(owner: "user-a"))

        let ownText = try #require(await texts(owner.outbox).first)
        let own = try #require(try decode(ownText).payload["data"]?.objectValue)
        #expect(own["record"]?["holder_email"] == "buyer@example.com")
        #expect(own["record"]?["user_id"] == "user-a")
        #expect(own["columns"]?.arrayValue?.count == ticketColumns.count)

        let otherText = try #require(await texts(stranger.outbox).first)
        let other = try #require(try decode(otherText).payload["data"]?.objectValue)
        let record = try #require(other["record"]?.objectValue)
        #expect(record["holder_email"] == nil)
        #expect(record["user_id"] == nil)
        #expect(Set(record.keys) == ["id", "event_id", "quantity", "status"])
        let columnNames = other["columns"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        #expect(columnNames == ["id", "event_id", "quantity", "status"])

        let adminText = try #require(await texts(service.outbox).first)
        let admin = try #require(try decode(adminText).payload["data"]?.objectValue)
        #expect(admin["record"]?["holder_email"] == "buyer@example.com")
    }

    @Test func eachFrameIsEncodedOncePerTopicIDsAndFormat() async throws {
        let hub = RealtimeHub()
        let sameV1 = (1...3).map { connect(hub, $0, .v1) }
        let sameV2 = (4...5).map { connect(hub, $0, .v2) }
        let otherTopic = connect(hub, 6, .v1)
        let filter = binding(filter: "event_id=eq.\(eventA)")
        for connection in sameV1 + sameV2 { try subscribe(hub, connection, "realtime:event-a", [filter]) }
        try subscribe(hub, otherTopic, "realtime:elsewhere", [filter])

        let encodesBefore = counted(hub, "marquee_realtime_encodes_total")
        hub.publish(ticketTypeChange(.update))
        #expect(counted(hub, "marquee_realtime_encodes_total") - encodesBefore == 3)  // (event-a, v1), (event-a, v2), (elsewhere, v1)
        #expect(counted(hub, "marquee_realtime_deliveries_total") == 6)

        var v1Texts: [String] = []
        for connection in sameV1 { v1Texts += await texts(connection.outbox) }
        #expect(v1Texts.count == 3)
        #expect(Set(v1Texts).count == 1)
        var v2Texts: [String] = []
        for connection in sameV2 { v2Texts += await texts(connection.outbox) }
        #expect(v2Texts.count == 2)
        #expect(Set(v2Texts).count == 1)
        #expect(sortingKeys(try decode(v1Texts[0]).payload) == sortingKeys(try decode(v2Texts[0], .v2).payload))

        // the next change is encoded afresh
        hub.publish(ticketTypeChange(.update, available: 96, version: 3))
        #expect(counted(hub, "marquee_realtime_encodes_total") - encodesBefore == 6)
    }
}

// MARK: - Slow readers and the outbox

@Suite struct OutboxTests {
    @Test func aStalledReaderDoesNotDelayOthers() async throws {
        let hub = RealtimeHub()
        let stalled = connect(hub, 1, capacity: 8)
        let reader = connect(hub, 2, capacity: 4096)
        try subscribe(hub, stalled, "realtime:a", [binding()])
        try subscribe(hub, reader, "realtime:a", [binding()])
        for version in 1...100 { hub.publish(ticketTypeChange(.update, available: Int64(200 - version), version: Int64(version))) }

        // the stalled socket's queue was dropped and replaced by a close frame telling it to resync
        #expect(stalled.outbox.overflowed)
        #expect(stalled.outbox.depth == 1)
        guard case .close(let code, let reason)? = await stalled.outbox.next() else {
            return #expect(Bool(false), "the stalled socket's outbox does not end with a close frame")
        }
        #expect(code == 1013)
        #expect(reason.contains("resync"))
        #expect(!stalled.outbox.enqueue(.text("late")))

        // the other socket got every change, in order
        let frames = await texts(reader.outbox)
        #expect(frames.count == 100)
        let versions = try frames.map { try decode($0).payload["data"]?["record"]?["version"]?.intValue }
        #expect(versions == (1...100).map { Int64($0) })
        #expect(!reader.outbox.overflowed)

        #expect(counted(hub, "marquee_realtime_deliveries_total") == 100 + 8)
        // "Sockets closed because their queue overflowed": one socket overflowed once
        #expect(counted(hub, "marquee_realtime_slow_consumer_drops_total") == 1)
    }

    @Test func framesComeOutInOrderThenNilAfterFinish() async throws {
        let outbox = Outbox(capacity: 10)
        #expect(outbox.enqueue(.text("1")))
        #expect(outbox.enqueue(.text("2")))
        #expect(outbox.enqueue(.close(code: 1000, reason: "bye")))
        #expect(outbox.depth == 3)
        outbox.finish()
        #expect(!outbox.enqueue(.text("after finish")))
        let frames = try await withDeadline(.seconds(5), "draining the outbox") {
            var frames: [OutboundFrame?] = []
            for _ in 0..<4 { frames.append(await outbox.next()) }
            return frames
        }
        #expect(frames == [.text("1"), .text("2"), .close(code: 1000, reason: "bye"), nil])
        #expect(outbox.depth == 0)
    }

    @Test func aWaitingReaderGetsTheNextFrame() async throws {
        let outbox = Outbox(capacity: 4)
        let received = try await withDeadline(.seconds(5), "a waiting reader to be handed frames") {
            try await withThrowingTaskGroup(of: [OutboundFrame?].self) { group in
                group.addTask {
                    var frames: [OutboundFrame?] = []
                    for _ in 0..<3 { frames.append(await outbox.next()) }
                    return frames
                }
                for index in 0..<2 { outbox.enqueue(.text("frame \(index)")) }
                outbox.finish()
                return try await group.next() ?? []
            }
        }
        #expect(received == [.text("frame 0"), .text("frame 1"), nil])
    }

    @Test func overflowReplacesTheQueueWithACloseFrame() async {
        let outbox = Outbox(capacity: 2)
        #expect(outbox.enqueue(.text("a")))
        #expect(outbox.enqueue(.text("b")))
        #expect(!outbox.overflowed)
        #expect(!outbox.enqueue(.text("c")))
        #expect(outbox.overflowed)
        #expect(outbox.depth == 1)
        let frame = await outbox.next()
        #expect(frame == .close(code: 1013, reason: "slow consumer: too many messages queued; reconnect and resync"))
    }
}

// MARK: - The index

@Suite struct SubscriptionIndexTests {
    private func entry(_ uid: Int, filter: String? = nil, events: ChangeKindFilter = .all, connection: ConnectionHandle) throws -> IndexedSubscription
    {
        let parsed = try ChangeFilter.parse(filter)
        let subscription = Subscription(
            uid: uid, connection: connection.id, topic: "realtime:t", bindingID: Int64(uid), table: "public.event_tickets", events: events,
            filter: parsed, select: nil, viewer: .anonymous)
        return IndexedSubscription(
            subscription, uid: uid, connection: connection, checksFilter: TableIndex.placement(parsed).checksFilter, shape: nil, channelUID: uid)
    }

    @Test func aChangeFindsExactlyTheBindingsWhoseFilterHolds() throws {
        let connection = ConnectionHandle(id: 1, serializer: .v1, outbox: Outbox(capacity: 8))
        var index = TableIndex()
        index.insert(try entry(1, connection: connection))  // no filter
        index.insert(try entry(2, filter: "event_id=eq.\(eventA)", connection: connection))
        index.insert(try entry(3, filter: "event_id=eq.\(eventB)", connection: connection))
        index.insert(try entry(4, filter: "event_id=eq.\(eventA.uppercased())", connection: connection))  // uuids compare lowercased
        index.insert(try entry(5, filter: "event_id=eq.\(eventA),available=lt.10", connection: connection))  // indexed, then checked
        index.insert(try entry(6, filter: "available=lt.10", connection: connection))  // scanned
        index.insert(try entry(7, filter: "event_id=eq.\(eventA)", events: .only(.insert), connection: connection))
        #expect(index.byValue["event_id"]?.count == 2)
        #expect(index.unfiltered.count == 1 && index.scanned.count == 1)

        let plenty = ticketTypeRow(event: eventA, available: 50, version: 2)
        #expect(index.matches(kind: .update, row: plenty).map(\.uid).sorted() == [1, 2, 4])
        let few = ticketTypeRow(event: eventA, available: 5, version: 3)
        #expect(index.matches(kind: .update, row: few).map(\.uid).sorted() == [1, 2, 4, 5, 6])
        #expect(index.matches(kind: .insert, row: few).map(\.uid).sorted() == [1, 2, 4, 5, 6, 7])
        #expect(index.matches(kind: .update, row: ticketTypeRow(event: eventB, available: 50, version: 2)).map(\.uid).sorted() == [1, 3])
    }

    @Test func removingABindingKeepsTheOthersAndEmptiesTheIndex() throws {
        let connection = ConnectionHandle(id: 1, serializer: .v1, outbox: Outbox(capacity: 8))
        var index = TableIndex()
        let entries = try (1...5).map { try entry($0, filter: "event_id=eq.\(eventA)", connection: connection) }
        for entry in entries { index.insert(entry) }
        index.remove(entries[1])
        index.remove(entries[4])  // the last one
        index.remove(entries[1])  // twice is harmless
        let row = ticketTypeRow(event: eventA, available: 5, version: 3)
        #expect(index.matches(kind: .update, row: row).map(\.uid).sorted() == [1, 3, 4])
        for entry in entries { index.remove(entry) }
        #expect(index.isEmpty)
        #expect(index.matches(kind: .update, row: row).isEmpty)
    }

    @Test func thousandsOfWatchersOfOneEventShareOneEncodedFrame() async throws {
        let hub = RealtimeHub()
        let watchers = (1...2000).map { connect(hub, $0, $0 % 2 == 0 ? .v1 : .v2) }
        for watcher in watchers { try subscribe(hub, watcher, "realtime:event-a", [binding(event: "UPDATE", filter: "event_id=eq.\(eventA)")]) }
        let bystander = connect(hub, 9999)
        try subscribe(hub, bystander, "realtime:event-b", [binding(event: "UPDATE", filter: "event_id=eq.\(eventB)")])
        hub.publish(ticketTypeChange(.update))
        #expect(counted(hub, "marquee_realtime_encodes_total") == 2)  // one per protocol version
        #expect(counted(hub, "marquee_realtime_deliveries_total") == 2000)
        #expect(watchers.allSatisfy { $0.outbox.depth == 1 })
        #expect(bystander.outbox.depth == 0)
        // the frames are the same bytes within a protocol version
        let v1 = Set(await texts(watchers[1].outbox) + texts(watchers[3].outbox))
        #expect(v1.count == 1)
        // leaving releases the shared frame shape
        for watcher in watchers { hub.leave(connectionID: watcher.id, topic: "realtime:event-a") }
        #expect(hub.frameShapeCount == 1)
    }
}
