import Foundation
import MarqueeCore
import Testing

@testable import MarqueeServer

/// An action in a comparable form.
enum Step: Equatable, CustomStringConvertible {
    case send(PhoenixMessage)
    case subscribe(topic: String, joinRef: String?, tables: [String], bindingIDs: [Int64], own: Bool)
    case unsubscribe(String)
    case broadcast(String, JSONValue, ack: Bool)
    case other(String)

    init(_ action: RealtimeSession.Action) {
        switch action {
        case .send(let message): self = .send(message)
        case .subscribe(let topic, let joinRef, let subscriptions, let membership):
            self = .subscribe(
                topic: topic, joinRef: joinRef, tables: subscriptions.map(\.table), bindingIDs: subscriptions.map(\.bindingID),
                own: membership.receiveOwnBroadcasts)
        case .unsubscribe(let topic): self = .unsubscribe(topic)
        case .limitHit(let limit): self = .other("limit \(limit.rawValue)")
        case .broadcast(let topic, let payload, _, let ack): self = .broadcast(topic, payload, ack: ack)
        default: self = .other("\(action)")
        }
    }

    var description: String {
        switch self {
        case .send(let message): return "send \(PhoenixSerializer.v2.encode(message))"
        case .subscribe(let topic, let joinRef, let tables, let ids, let own): return "subscribe \(topic) \(joinRef ?? "-") \(tables) \(ids) \(own)"
        case .unsubscribe(let topic): return "unsubscribe \(topic)"
        case .broadcast(let topic, let payload, let ack): return "broadcast \(topic) \(payload.serialized()) ack: \(ack)"
        case .other(let text): return text
        }
    }
}

let userA = Viewer(role: .authenticated, userID: "user-a")
private let t0 = Date(timeIntervalSince1970: 1_800_000_000)

private func makeSession(connect: TokenCheck = .valid(userA, expiresAt: nil), maxChannels: Int = 100) -> RealtimeSession {
    var limits = SessionLimits()
    limits.maxChannels = maxChannels
    return RealtimeSession(connectionID: 7, connectToken: connect, policy: .standard, limits: limits)
}

func joinMessage(_ topic: String, ref: String, bindings: [JSONObject] = [], config extra: JSONObject = [:], token: String? = nil)
    -> PhoenixMessage
{
    var config: JSONObject = ["postgres_changes": .array(bindings.map { .object($0) })]
    for (key, value) in extra { config[key] = value }
    var payload: JSONObject = ["config": .object(config)]
    if let token { payload["access_token"] = .string(token) }
    return PhoenixMessage(joinRef: ref, ref: ref, topic: topic, event: "phx_join", payload: .object(payload))
}

private func reply(_ topic: String, joinRef: String?, ref: String?, _ status: String, _ response: JSONValue) -> Step {
    .send(
        PhoenixMessage(
            joinRef: joinRef, ref: ref, topic: topic, event: "phx_reply", payload: .object(["status": .string(status), "response": response])))
}

private func errorReply(_ topic: String, ref: String?, joinRef: String? = nil, _ reason: String) -> Step {
    reply(topic, joinRef: joinRef ?? ref, ref: ref, "error", .object(["reason": .string(reason)]))
}

private func system(_ topic: String, joinRef: String?, _ ext: String, _ status: String, _ message: String) -> Step {
    .send(
        PhoenixMessage(
            joinRef: joinRef, ref: nil, topic: topic, event: "system",
            payload: .object([
                "extension": .string(ext), "status": .string(status), "message": .string(message),
                "channel": .string(String(topic.dropFirst("realtime:".count))),
            ])))
}

private func close(_ topic: String, joinRef: String?) -> Step {
    .send(PhoenixMessage(joinRef: joinRef, ref: joinRef, topic: topic, event: "phx_close", payload: .object([:])))
}

private func steps(_ actions: [RealtimeSession.Action]) -> [Step] { actions.map(Step.init) }

private let ticketUpdates: JSONObject = ["event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": "event_id=eq.42"]

@Suite struct RealtimeSessionJoinTests {
    @Test func heartbeatIsAnsweredWithItsRef() {
        var session = makeSession()
        let heartbeat = PhoenixMessage(ref: "3", topic: "phoenix", event: "heartbeat")
        #expect(steps(session.receive(heartbeat)) == [reply("phoenix", joinRef: nil, ref: "3", "ok", .object([:]))])
        let nullRef = PhoenixMessage(ref: nil, topic: "phoenix", event: "heartbeat")
        #expect(steps(session.receive(nullRef)) == [reply("phoenix", joinRef: nil, ref: nil, "ok", .object([:]))])
    }

    @Test func joinRepliesThenSubscribesThenReportsSubscribed() throws {
        var session = makeSession()
        let binding = try #require(try JoinConfig.parse(joinMessage("realtime:event-42", ref: "1", bindings: [ticketUpdates]).payload).bindings.first)
        let actions = steps(session.receive(joinMessage("realtime:event-42", ref: "1", bindings: [ticketUpdates])))
        #expect(
            actions == [
                reply("realtime:event-42", joinRef: "1", ref: "1", "ok", .object(["postgres_changes": .array([binding.echo])])),
                .subscribe(topic: "realtime:event-42", joinRef: "1", tables: ["public.event_tickets"], bindingIDs: [binding.id], own: false),
                system("realtime:event-42", joinRef: "1", "postgres_changes", "ok", "Subscribed to PostgreSQL"),
            ])
        #expect(binding.echo.objectValue?["filter"] == "event_id=eq.42")
        #expect(session.joinedTopics == ["realtime:event-42"])
    }

    @Test func joinWithoutBindingsSendsNoSystemMessage() {
        var session = makeSession()
        #expect(
            steps(session.receive(joinMessage("realtime:room1", ref: "1", config: ["broadcast": .object(["self": "true"])])))
                == [
                    reply("realtime:room1", joinRef: "1", ref: "1", "ok", .object(["postgres_changes": .array([])])),
                    .subscribe(topic: "realtime:room1", joinRef: "1", tables: [], bindingIDs: [], own: true),
                ])
    }

    @Test func nonRealtimeTopicIsUnmatched() {
        var session = makeSession()
        #expect(steps(session.receive(joinMessage("room1", ref: "1"))) == [errorReply("room1", ref: "1", "unmatched topic")])
        #expect(session.joinedTopics.isEmpty)
    }

    @Test func emptyNameIsRefused() {
        var session = makeSession()
        #expect(
            steps(session.receive(joinMessage("realtime:", ref: "1")))
                == [errorReply("realtime:", ref: "1", "TopicNameRequired: You must provide a topic name")])
    }

    @Test func invalidJoinTokenIsReportedWithItsReason() {
        var session = makeSession()
        let actions = session.receive(
            joinMessage("realtime:room1", ref: "1", token: "junk"), token: .invalid("MalformedJWT: The token provided is not a valid JWT"))
        #expect(steps(actions) == [errorReply("realtime:room1", ref: "1", "MalformedJWT: The token provided is not a valid JWT")])
        #expect(session.joinedTopics.isEmpty)
    }

    @Test func invalidConnectTokenIsReportedOnJoinWithoutToken() {
        var session = makeSession(connect: .invalid("InvalidJWTToken: API key is missing"))
        #expect(
            steps(session.receive(joinMessage("realtime:room1", ref: "1")))
                == [errorReply("realtime:room1", ref: "1", "InvalidJWTToken: API key is missing")])
    }

    @Test func validJoinTokenOverridesInvalidConnectToken() {
        var session = makeSession(connect: .invalid("InvalidJWTToken: API key is missing"))
        let actions = steps(session.receive(joinMessage("realtime:room1", ref: "1", token: "good"), token: .valid(userA, expiresAt: nil)))
        #expect(actions.first == reply("realtime:room1", joinRef: "1", ref: "1", "ok", .object(["postgres_changes": .array([])])))
        #expect(session.joinedTopics == ["realtime:room1"])
    }

    @Test func duplicateJoinClosesTheOldChannelFirst() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:room1", ref: "1"))
        let actions = steps(session.receive(joinMessage("realtime:room1", ref: "5")))
        #expect(
            actions == [
                .unsubscribe("realtime:room1"),
                close("realtime:room1", joinRef: "1"),
                reply("realtime:room1", joinRef: "5", ref: "5", "ok", .object(["postgres_changes": .array([])])),
                .subscribe(topic: "realtime:room1", joinRef: "5", tables: [], bindingIDs: [], own: false),
            ])
        #expect(session.joinedTopics == ["realtime:room1"])
    }

    @Test func channelLimit() {
        var session = makeSession(maxChannels: 2)
        _ = session.receive(joinMessage("realtime:a", ref: "1"))
        _ = session.receive(joinMessage("realtime:b", ref: "2"))
        #expect(
            steps(session.receive(joinMessage("realtime:c", ref: "3")))
                == [.other("limit ChannelRateLimitReached"), errorReply("realtime:c", ref: "3", "ChannelRateLimitReached: Too many channels")])
        #expect(Set(session.joinedTopics) == ["realtime:a", "realtime:b"])
        // rejoining a channel already counted is not a new channel
        #expect(steps(session.receive(joinMessage("realtime:a", ref: "4"))).contains(.unsubscribe("realtime:a")))
        #expect(Set(session.joinedTopics) == ["realtime:a", "realtime:b"])
        // leaving frees a place
        _ = session.receive(PhoenixMessage(joinRef: "2", ref: "5", topic: "realtime:b", event: "phx_leave"))
        #expect(steps(session.receive(joinMessage("realtime:c", ref: "6"))).count == 2)
        #expect(Set(session.joinedTopics) == ["realtime:a", "realtime:c"])
    }

    @Test func privateChannelNeedsTopicAccess() {
        var session = makeSession(connect: .valid(.anonymous, expiresAt: nil))
        let join = joinMessage("realtime:room1", ref: "1", config: ["private": true])
        #expect(session.topicToCheck(join, token: nil) == .init(topic: "room1", viewer: .anonymous, isPrivate: true))
        #expect(
            steps(session.receive(join))
                == [
                    errorReply(
                        "realtime:room1", ref: "1", "Unauthorized: You do not have permissions to read from this Channel topic: room1")
                ])
        #expect(
            steps(session.receive(join, rights: TopicRights.none))
                == [
                    errorReply(
                        "realtime:room1", ref: "1", "Unauthorized: You do not have permissions to read from this Channel topic: room1")
                ])
        #expect(
            steps(session.receive(join, rights: TopicRights(mayJoin: true, mayBroadcast: true, mayTrackPresence: true))).first
                == reply("realtime:room1", joinRef: "1", ref: "1", "ok", .object(["postgres_changes": .array([])])))
        #expect(session.joinedTopics == ["realtime:room1"])
        // a public join is asked about too: whether the name is a private topic
        #expect(session.topicToCheck(joinMessage("realtime:open", ref: "2"), token: nil)?.isPrivate == false)
    }

    @Test func privateTopicsCannotBeJoinedPublicly() {
        var session = makeSession()
        // user:* topics are private whatever the edge says; other names as the edge decided
        let userTopic = steps(session.receive(joinMessage("realtime:user:user-a:reservations", ref: "1")))
        #expect(userTopic.count == 1)
        #expect("\(userTopic)".contains("PrivateOnly"))
        let marked = steps(session.receive(joinMessage("realtime:vip", ref: "2"), rights: TopicRights.none))
        #expect("\(marked)".contains("PrivateOnly"))
        #expect(session.joinedTopics.isEmpty)
    }

    @Test func marqueeOwnTopicsAcceptNoClientMessages() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:event:42:availability", ref: "1", config: ["presence": .object(["enabled": true])]))
        let forged = PhoenixMessage(
            joinRef: "1", ref: "2", topic: "realtime:event:42:availability", event: "broadcast",
            payload: .object(["type": "broadcast", "event": "availability", "payload": .object(["available": 0])]))
        let actions = steps(session.receive(forged))
        #expect(
            actions == [
                errorReply(
                    "realtime:event:42:availability", ref: "2", joinRef: "1",
                    "Unauthorized: broadcasts on event:42:availability come only from the database; clients may not send them")
            ])
        let track = PhoenixMessage(
            joinRef: "1", ref: "3", topic: "realtime:event:42:availability", event: "presence",
            payload: .object(["type": "presence", "event": "track", "payload": .object(["a": 1])]))
        #expect("\(steps(session.receive(track)))".contains("come only from the database"))
        // a private channel without the send right
        _ = session.receive(
            joinMessage("realtime:room9", ref: "4", config: ["private": true]),
            rights: TopicRights(mayJoin: true, mayBroadcast: false, mayTrackPresence: true))
        let broadcast = PhoenixMessage(
            joinRef: "4", ref: "5", topic: "realtime:room9", event: "broadcast",
            payload: .object(["type": "broadcast", "event": "x", "payload": .object([:])]))
        #expect("\(steps(session.receive(broadcast)))".contains("do not have permissions to send broadcasts"))
    }

    @Test func payloadsOverTheirCapsAreRefused() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:room1", ref: "1", config: ["presence": .object(["enabled": true])]))
        let broadcast = PhoenixMessage(
            joinRef: "1", ref: "2", topic: "realtime:room1", event: "broadcast",
            payload: .object(["type": "broadcast", "event": "x", "payload": .object([:])]))
        let refused = session.receive(broadcast, frameBytes: SessionLimits().maxBroadcastBytes + 1)
        #expect(refused.contains { if case .limitHit(.payloadSize) = $0 { return true } else { return false } })
        let track = PhoenixMessage(
            joinRef: "1", ref: "3", topic: "realtime:room1", event: "presence",
            payload: .object(["type": "presence", "event": "track", "payload": .object(["a": 1])]))
        #expect("\(steps(session.receive(track, frameBytes: SessionLimits().maxPresenceBytes + 1)))".contains("PayloadTooLarge"))
        #expect(steps(session.receive(track, frameBytes: 100)).count == 2)
    }

    @Test func tokenRefreshChangesTheBindingsViewer() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:room1", ref: "1"))
        let refresh = PhoenixMessage(joinRef: "1", ref: "3", topic: "realtime:room1", event: "access_token", payload: .object(["access_token": "x"]))
        let actions = session.receive(refresh, token: .valid(.anonymous, expiresAt: nil))
        guard case .updateViewer(let topic, _, let viewer) = actions.first else {
            Issue.record("expected updateViewer, got \(actions)")
            return
        }
        #expect(topic == "realtime:room1")
        #expect(viewer == .anonymous)
        // an sb_ key falls back to the token given at connect
        let key = PhoenixMessage(ref: "4", topic: "realtime:room1", event: "access_token", payload: .object(["access_token": "sb_abc"]))
        guard case .updateViewer(_, _, let fallback) = session.receive(key).first else {
            Issue.record("expected updateViewer")
            return
        }
        #expect(fallback == userA)
    }
}

@Suite struct RealtimeSessionChannelTests {
    @Test func leaveRepliesUnsubscribesAndCloses() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:room1", ref: "1"))
        let actions = steps(session.receive(PhoenixMessage(joinRef: "1", ref: "6", topic: "realtime:room1", event: "phx_leave")))
        #expect(
            actions == [
                reply("realtime:room1", joinRef: "1", ref: "6", "ok", .object([:])),
                .unsubscribe("realtime:room1"),
                close("realtime:room1", joinRef: "1"),
            ])
        #expect(session.joinedTopics.isEmpty)
        // leaving a topic that is not joined still gets ok, and nothing else
        #expect(
            steps(session.receive(PhoenixMessage(joinRef: "1", ref: "7", topic: "realtime:room1", event: "phx_leave")))
                == [reply("realtime:room1", joinRef: "1", ref: "7", "ok", .object([:]))])
    }

    @Test func messageToUnjoinedTopicIsUnmatched() {
        var session = makeSession()
        let broadcast = PhoenixMessage(
            joinRef: "1", ref: "2", topic: "realtime:room1", event: "broadcast",
            payload: .object(["type": "broadcast", "event": "ping", "payload": .object([:])]))
        #expect(steps(session.receive(broadcast)) == [errorReply("realtime:room1", ref: "2", joinRef: "1", "unmatched topic")])
    }

    @Test func broadcastWithAndWithoutAck() {
        let payload: JSONValue = .object(["type": "broadcast", "event": "ping", "payload": .object(["n": 1])])
        var acked = makeSession()
        _ = acked.receive(joinMessage("realtime:room1", ref: "1", config: ["broadcast": .object(["ack": true])]))
        #expect(
            steps(acked.receive(PhoenixMessage(joinRef: "1", ref: "2", topic: "realtime:room1", event: "broadcast", payload: payload)))
                == [.broadcast("realtime:room1", payload, ack: true)])  // the edge sends the ok once the topic's rate allows it

        var silent = makeSession()
        _ = silent.receive(joinMessage("realtime:room1", ref: "1", config: ["broadcast": .object(["ack": false])]))
        #expect(
            steps(silent.receive(PhoenixMessage(joinRef: "1", ref: "2", topic: "realtime:room1", event: "broadcast", payload: payload)))
                == [.broadcast("realtime:room1", payload, ack: false)])
    }

    @Test func floodsAndJoinStormsAreRefusedByName() {
        var limits = SessionLimits()
        limits.messagesPerSecond = 5
        limits.joinsPerSecond = 1
        var session = RealtimeSession(connectionID: 7, connectToken: .valid(userA, expiresAt: nil), policy: .standard, limits: limits)
        var refusedJoins = 0
        for n in 0..<3 {  // burst of 2 joins
            let actions = session.receive(joinMessage("realtime:j\(n)", ref: "\(n)"), now: t0)
            if actions.contains(where: { if case .limitHit(.joins) = $0 { return true } else { return false } }) { refusedJoins += 1 }
        }
        #expect(refusedJoins == 1)
        var refusedMessages = 0
        for n in 0..<10 {  // 7 more frames in the same instant: the burst of 10 is spent
            let heartbeat = PhoenixMessage(ref: "h\(n)", topic: "phoenix", event: "heartbeat")
            let actions = session.receive(heartbeat, now: t0)
            if actions.contains(where: { if case .limitHit(.messages) = $0 { return true } else { return false } }) { refusedMessages += 1 }
        }
        #expect(refusedMessages == 3)
        // a second later the bucket has refilled
        let later = session.receive(PhoenixMessage(ref: "late", topic: "phoenix", event: "heartbeat"), now: t0.addingTimeInterval(1))
        #expect(steps(later).count == 1)
    }

    @Test func invalidAccessTokenClosesTheChannel() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:room1", ref: "1"))
        let refresh = PhoenixMessage(joinRef: "1", ref: "3", topic: "realtime:room1", event: "access_token", payload: .object(["access_token": "x"]))
        #expect(RealtimeSession.tokenToCheck(refresh) == "x")
        let actions = steps(session.receive(refresh, token: .invalid("Token has expired 5 seconds ago")))
        #expect(
            actions == [
                system("realtime:room1", joinRef: "1", "system", "error", "Token has expired 5 seconds ago"),
                .unsubscribe("realtime:room1"),
                close("realtime:room1", joinRef: "1"),
            ])
        #expect(session.joinedTopics.isEmpty)
    }

    @Test func validAccessTokenIsNotAnswered() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:room1", ref: "1"))
        let refresh = PhoenixMessage(joinRef: "1", ref: "3", topic: "realtime:room1", event: "access_token", payload: .object(["access_token": "x"]))
        #expect(session.receive(refresh, token: .valid(userA, expiresAt: t0.addingTimeInterval(60))).allSatisfy { !"\($0)".contains("send(") })
        #expect(session.nextExpiry == t0.addingTimeInterval(60))
        // an sb_ key is not a token to check
        let key = PhoenixMessage(ref: "4", topic: "realtime:room1", event: "access_token", payload: .object(["access_token": "sb_abc"]))
        #expect(RealtimeSession.tokenToCheck(key) == nil)
    }

    @Test func expiredTokensCloseTheirChannels() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:short", ref: "1"), token: .valid(userA, expiresAt: t0.addingTimeInterval(60)))
        _ = session.receive(joinMessage("realtime:long", ref: "2"), token: .valid(userA, expiresAt: t0.addingTimeInterval(3600)))
        _ = session.receive(joinMessage("realtime:forever", ref: "3"))
        #expect(session.nextExpiry == t0.addingTimeInterval(60))
        #expect(session.expireTokens(now: t0.addingTimeInterval(59)).isEmpty)
        #expect(
            steps(session.expireTokens(now: t0.addingTimeInterval(65)))
                == [
                    system("realtime:short", joinRef: "1", "system", "error", "Token has expired 5 seconds ago"),
                    .unsubscribe("realtime:short"),
                    close("realtime:short", joinRef: "1"),
                ])
        #expect(Set(session.joinedTopics) == ["realtime:long", "realtime:forever"])
        #expect(session.nextExpiry == t0.addingTimeInterval(3600))
        #expect(session.expireTokens(now: t0.addingTimeInterval(65)).isEmpty)
    }

    @Test func unknownEventOnAJoinedTopic() {
        var session = makeSession()
        _ = session.receive(joinMessage("realtime:room1", ref: "1"))
        #expect(
            steps(session.receive(PhoenixMessage(joinRef: "1", ref: "2", topic: "realtime:room1", event: "shout")))
                == [errorReply("realtime:room1", ref: "2", joinRef: "1", "unknown event 'shout'")])
    }
}

@Suite struct RealtimeSessionBindingTests {
    private func bindingSteps(_ binding: JSONObject, viewer: Viewer = userA) -> [Step] {
        var session = makeSession(connect: .valid(viewer, expiresAt: nil))
        return steps(session.receive(joinMessage("realtime:mine", ref: "1", bindings: [binding])))
    }

    @Test func sensitiveFilterByNonOwnerIsUnauthorized() throws {
        let actions = bindingSteps(["event": "*", "schema": "public", "table": "tickets", "filter": "holder_email=eq.someone@example.com"])
        #expect(actions.count == 3)
        guard case .send(let ok) = actions.first else { throw TestFailure("no reply") }
        #expect(ok.payload["status"] == "ok")
        guard case .send(let system) = actions.last else { throw TestFailure("no system message") }
        #expect(system.event == "system")
        #expect(system.payload["status"] == "error")
        #expect(system.payload["extension"] == "postgres_changes")
        #expect(system.payload["channel"] == "mine")
        #expect(system.payload["message"]?.stringValue?.contains("Unauthorized") == true)
        // and nothing is indexed for it
        #expect(actions[1] == .subscribe(topic: "realtime:mine", joinRef: "1", tables: [], bindingIDs: [], own: false))
    }

    @Test func ownerMayFilterOnTheirOwnUserID() {
        let actions = bindingSteps(["event": "*", "schema": "public", "table": "tickets", "filter": "user_id=eq.user-a"])
        #expect(actions.last == system("realtime:mine", joinRef: "1", "postgres_changes", "ok", "Subscribed to PostgreSQL"))
        let other = bindingSteps(["event": "*", "schema": "public", "table": "tickets", "filter": "user_id=eq.user-b"])
        guard case .send(let message) = other.last else { return #expect(Bool(false), "no system message") }
        #expect(message.payload["status"] == "error")
    }

    @Test func unknownTableIsReported() throws {
        let actions = bindingSteps(["event": "*", "schema": "public", "table": "secrets"])
        guard case .send(let system) = actions.last else { throw TestFailure("no system message") }
        #expect(system.payload["status"] == "error")
        #expect(
            system.payload["message"]
                == "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [schema: public, table: secrets, filters: []]"
        )
    }

    @Test func badFilterIsReported() throws {
        let actions = bindingSteps(["event": "*", "schema": "public", "table": "event_tickets", "filter": "event_id=foo.1"])
        guard case .send(let system) = actions.last else { throw TestFailure("no system message") }
        #expect(system.payload["status"] == "error")
        #expect(system.payload["message"]?.stringValue?.hasPrefix("Error parsing `filter` params") == true)
    }

    @Test func wildcardTableCoversEveryPublishedTable() {
        let actions = bindingSteps(["event": "INSERT", "schema": "public", "table": "*"])
        guard case .subscribe(_, _, let tables, _, _) = actions[1] else { return #expect(Bool(false), "no subscribe: \(actions)") }
        #expect(tables == ["public.event_tickets", "public.events", "public.tickets"])
    }
}
