import Foundation
import MarqueeCore
import Synchronization
import Testing

@testable import MarqueeServer

/// A coalescing timer driven by the test: time moves only in `advance(by:)`, which runs the work that falls due.
final class ManualCoalescingTimer: CoalescingTimer {
    private struct State {
        var now: ContinuousClock.Instant
        var scheduled: [(at: ContinuousClock.Instant, work: @Sendable () -> Void)] = []
    }
    private let state: Mutex<State>

    init(start: ContinuousClock.Instant = .now) { state = Mutex(State(now: start)) }

    func now() -> ContinuousClock.Instant { state.withLock { $0.now } }

    func schedule(at deadline: ContinuousClock.Instant, _ work: @escaping @Sendable () -> Void) {
        state.withLock { $0.scheduled.append((deadline, work)) }
    }

    var pendingTimers: Int { state.withLock { $0.scheduled.count } }

    /// Moves the clock forward, running each piece of work whose time has come (at its own time, in order).
    func advance(by duration: Duration) {
        let end = state.withLock { $0.now.advanced(by: duration) }
        while true {
            let next: (at: ContinuousClock.Instant, work: @Sendable () -> Void)? = state.withLock { state in
                guard let index = state.scheduled.indices.min(by: { state.scheduled[$0].at < state.scheduled[$1].at }),
                    state.scheduled[index].at <= end
                else { return nil }
                let item = state.scheduled.remove(at: index)
                state.now = max(state.now, item.at)
                return item
            }
            guard let next else { break }
            next.work()
        }
        state.withLock { $0.now = end }
    }
}

private let eventA = "0b7f4c52-8a8e-4c3c-9b51-0d1f2a3b4c5d"
private let typeA = "a1a1a1a1-0000-4000-8000-000000000001"
private let typeB = "b2b2b2b2-0000-4000-8000-000000000002"

private func ticketTypeUpdate(type: String = typeA, version: Int64) -> RowChange {
    let columns: [RowChange.Column] = [
        .init(name: "id", typeName: "uuid", typeOID: 2950, isKey: true),
        .init(name: "event_id", typeName: "uuid", typeOID: 2950, isKey: false),
        .init(name: "available", typeName: "int4", typeOID: 23, isKey: false),
        .init(name: "version", typeName: "int8", typeOID: 20, isKey: false),
    ]
    func row(_ version: Int64) -> JSONObject {
        ["id": .string(type), "event_id": .string(eventA), "available": .int(1000 - version), "version": .int(version)]
    }
    return RowChange(
        schema: "public", table: "event_tickets", kind: .update, commitTimestamp: PgTimestamp(unixMicroseconds: 1_768_472_430_123_000),
        commitLSN: PgLSN(0x1_0000_0100), xid: 900, columns: columns, record: row(version), oldRecord: row(version - 1))
}

@Suite struct HubCoalescingTests {
    let timer = ManualCoalescingTimer()

    func makeHub() -> RealtimeHub {
        RealtimeHub(coalescing: .init(interval: .milliseconds(100), timer: timer))
    }

    func join(_ hub: RealtimeHub, _ id: Int, _ bindings: [JSONObject], marquee: JSONObject? = nil) throws -> ConnectionHandle {
        let connection = ConnectionHandle(id: id, serializer: .v1, outbox: Outbox(capacity: 4096))
        hub.register(connection)
        var session = RealtimeSession(connectionID: id, connectToken: .valid(.anonymous, expiresAt: nil), policy: hub.policy)
        var config: JSONObject = ["postgres_changes": .array(bindings.map { .object($0) })]
        if let marquee { config["marquee"] = .object(marquee) }
        let join = PhoenixMessage(joinRef: "1", ref: "1", topic: "realtime:t\(id)", event: "phx_join", payload: .object(["config": .object(config)]))
        for case .subscribe(let topic, let joinRef, let subscriptions, let membership) in session.receive(join) {
            hub.join(connectionID: id, topic: topic, joinRef: joinRef, subscriptions: subscriptions, membership: membership)
        }
        return connection
    }

    func updates(filter: String? = "event_id=eq.\(eventA)", event: String = "UPDATE") -> JSONObject {
        var object: JSONObject = ["event": .string(event), "schema": "public", "table": "event_tickets"]
        if let filter { object["filter"] = .string(filter) }
        return object
    }

    /// The versions of the rows delivered to a connection so far, as "type:version".
    func delivered(_ connection: ConnectionHandle) async throws -> [String] {
        var seen: [String] = []
        while connection.outbox.depth > 0, let frame = await connection.outbox.next() {
            let message = try PhoenixSerializer.v1.decode(try #require(frame.text))
            guard message.event == "postgres_changes", let record = message.payload["data"]?["record"] else { continue }
            let type = record["id"]?.stringValue == typeA ? "A" : "B"
            seen.append("\(type):\(record["version"]?.intValue ?? -1)")
        }
        return seen
    }

    @Test func availabilityWatchersGetTheNewestVersionAtMostOncePerWindowAndOthersGetEveryChange() async throws {
        let hub = makeHub()
        let watcher = try join(hub, 1, [updates()])
        let everything = try join(hub, 2, [updates(event: "*")])
        let lowStock = try join(hub, 3, [updates(filter: "available=lt.10000")])
        let optedOut = try join(hub, 4, [updates()], marquee: ["coalesce": false])
        let unfiltered = try join(hub, 5, [updates(filter: nil)])

        hub.publish(ticketTypeUpdate(version: 2))  // the first change goes at once
        for version in 3...5 {
            timer.advance(by: .milliseconds(15))
            hub.publish(ticketTypeUpdate(version: Int64(version)))
        }
        hub.publish(ticketTypeUpdate(type: typeB, version: 7))  // another row has a window of its own
        #expect(try await delivered(watcher) == ["A:2", "B:7"])
        #expect(try await delivered(unfiltered) == ["A:2", "B:7"])
        for other in [everything, lowStock, optedOut] {
            #expect(try await delivered(other) == ["A:2", "A:3", "A:4", "A:5", "B:7"])
        }
        #expect(hub.coalescingRows == (open: 2, pending: 1))

        timer.advance(by: .milliseconds(55))  // t = 100 ms: A's window ends; 3 and 4 were never sent to the watcher
        #expect(try await delivered(watcher) == ["A:5"])
        #expect(try await delivered(unfiltered) == ["A:5"])
        for other in [everything, lowStock, optedOut] { #expect(try await delivered(other).isEmpty) }

        timer.advance(by: .milliseconds(30))
        hub.publish(ticketTypeUpdate(version: 6))  // in A's second window (100–200 ms), before its tolerance
        timer.advance(by: .milliseconds(69))
        #expect(try await delivered(watcher).isEmpty)
        timer.advance(by: .milliseconds(1))
        #expect(try await delivered(watcher) == ["A:6"])

        // quiet windows end with nothing to send and the rows are forgotten: the next change goes at once
        timer.advance(by: .milliseconds(300))
        #expect(hub.coalescingRows == (open: 0, pending: 0))
        hub.publish(ticketTypeUpdate(version: 8))
        #expect(try await delivered(watcher) == ["A:8"])
        #expect(timer.pendingTimers <= 1)
    }

    @Test func aWatcherWhoLeavesDuringAWindowGetsNothingMoreAndTheLastVersionStillReachesTheOthers() async throws {
        let hub = makeHub()
        let leaving = try join(hub, 1, [updates()])
        let staying = try join(hub, 2, [updates()])
        hub.publish(ticketTypeUpdate(version: 2))
        hub.publish(ticketTypeUpdate(version: 3))
        hub.leave(connectionID: 1, topic: "realtime:t1")
        let late = try join(hub, 3, [updates()])  // joins during the window: gets the window's newest version
        timer.advance(by: .milliseconds(100))
        #expect(try await delivered(leaving) == ["A:2"])
        #expect(try await delivered(staying) == ["A:2", "A:3"])
        #expect(try await delivered(late) == ["A:3"])
    }

    @Test func withoutCoalescingEveryVersionGoesOut() async throws {
        let hub = RealtimeHub(coalescing: .init(interval: .zero, timer: timer))
        let watcher = try join(hub, 1, [updates()])
        for version in 2...6 { hub.publish(ticketTypeUpdate(version: Int64(version))) }
        #expect(try await delivered(watcher) == ["A:2", "A:3", "A:4", "A:5", "A:6"])
        #expect(timer.pendingTimers == 0)
    }
}
