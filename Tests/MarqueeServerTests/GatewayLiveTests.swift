import Foundation
import HummingbirdWSClient
import Logging
import MarqueeCore
import Testing

@testable import MarqueeServer

private let ticketTypesOfEvent42: JSONObject = [
    "event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": "event_id=eq.00000000-0000-4000-8000-000000000042",
]

/// The realtime endpoint over real sockets: joins, heartbeats, leaves and errors.
@Suite(.testDatabase) struct GatewayLiveTests {
    @Test func heartbeatJoinAndLeaveOverV1() async throws {
        try await withLiveApp { app in
            let token = try await app.token()
            try await withSocket(app, apikey: token) { socket in
                try await socket.sendText(#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}"#)
                #expect(
                    try await socket.receiveText("the heartbeat reply")
                        == #"{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}"#)
                // realtime-py's heartbeat has a null ref, and the reply must still carry the key
                try await socket.sendText(#"{"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}"#)
                #expect(
                    try await socket.receiveText("the null-ref heartbeat reply")
                        == #"{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":null}"#)

                let reply = try await socket.join("realtime:event-42", ref: "2", bindings: [ticketTypesOfEvent42])
                #expect(reply.payload["status"] == "ok")
                let echoed = try #require(reply.payload["response"]?["postgres_changes"]?.arrayValue?.first?.objectValue)
                for (key, value) in ticketTypesOfEvent42 { #expect(echoed[key] == value, "\(key)") }
                #expect((echoed["id"]?.intValue ?? 0) > 0)
                let system = try await socket.receiveText("Subscribed to PostgreSQL")
                #expect(
                    system
                        == #"{"topic":"realtime:event-42","event":"system","payload":{"extension":"postgres_changes","status":"ok","message":"Subscribed to PostgreSQL","channel":"event-42"},"ref":null}"#
                )

                try await socket.send(PhoenixMessage(joinRef: "2", ref: "3", topic: "realtime:event-42", event: "phx_leave"))
                let leaveReply = try await socket.receiveText("the leave reply")
                #expect(leaveReply == #"{"topic":"realtime:event-42","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"3"}"#)
                let close = try await socket.receiveText("phx_close")
                #expect(close == #"{"topic":"realtime:event-42","event":"phx_close","payload":{},"ref":"2"}"#)
            }
        }
    }

    @Test func v2FramesAndBinaryBroadcast() async throws {
        try await withLiveApp { app in
            let token = try await app.token()
            try await withSocket(app, apikey: token, vsn: "2.0.0") { socket in
                try await socket.sendText(#"[null,"1","phoenix","heartbeat",{}]"#)
                #expect(try await socket.receiveText("the heartbeat reply") == #"[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]"#)

                let reply = try await socket.joinText("realtime:room1", ref: "2", config: ["broadcast": .object(["ack": true, "self": true])])
                #expect(reply == #"["2","2","realtime:room1","phx_reply",{"status":"ok","response":{"postgres_changes":[]}}]"#)

                // realtime-js sends broadcasts as binary kind-3 frames
                let topic = Array("realtime:room1".utf8)
                let event = Array("ping".utf8)
                let payload = Array(#"{"n":1}"#.utf8)
                try await socket.sendBinary([3, 1, 1, UInt8(topic.count), UInt8(event.count), 0, 1] + Array("23".utf8) + topic + event + payload)
                var frames: [String] = []
                for index in 0..<2 { frames.append(try await socket.receiveText("broadcast frame \(index)")) }
                // with self and ack the sender gets its own broadcast (as JSON, never binary kind 0-2) and the ack
                #expect(frames.contains(#"["2","3","realtime:room1","phx_reply",{"status":"ok","response":{}}]"#))
                #expect(
                    frames.contains {
                        sameJSON($0, #"[null,null,"realtime:room1","broadcast",{"type":"broadcast","event":"ping","payload":{"n":1}}]"#)
                    }, "\(frames)")
            }
        }
    }

    @Test func aBadFrameGetsAnErrorAndTheSocketKeepsWorking() async throws {
        try await withLiveApp { app in
            let token = try await app.token()
            try await withSocket(app, apikey: token) { socket in
                _ = try await socket.join("realtime:room1", ref: "1", config: ["broadcast": .object(["ack": true])])
                try await socket.sendText("this is not json")
                #expect(
                    try await socket.receiveText("the reply to a bad frame")
                        == #"{"topic":"phoenix","event":"phx_reply","payload":{"status":"error","response":{"reason":"the frame is not valid JSON"}},"ref":null}"#
                )
                try await socket.sendText(#"{"event":"heartbeat","payload":{},"ref":"2"}"#)
                #expect(try await socket.receive("the reply to a frame without topic").payload["response"]?["reason"] == "the frame has no topic")
                try await socket.sendBinary([9, 9, 9])
                #expect(try await socket.receive("the reply to a bad binary frame").payload["status"] == "error")

                // the socket and its channel still work
                try await socket.sendText(#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"3"}"#)
                #expect(
                    try await socket.receiveText("a heartbeat reply after bad frames")
                        == #"{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"3"}"#)
                try await socket.send(
                    PhoenixMessage(
                        joinRef: "1", ref: "4", topic: "realtime:room1", event: "broadcast",
                        payload: .object(["type": "broadcast", "event": "e", "payload": .object([:])])))
                #expect(
                    try await socket.receiveText("the broadcast ack")
                        == #"{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"4"}"#)
            }
        }
    }

    @Test func joinErrors() async throws {
        try await withLiveApp { app in
            let token = try await app.token()
            let expired = try await app.token(lifetime: -120)
            let foreign = try await TokenAuthority(secret: "another-secret-of-at-least-32-bytes!!").mint(
                sub: "x", role: .authenticated, lifetime: 600)
            try await withSocket(app, apikey: token) { socket in
                func reason(_ reply: PhoenixMessage) -> String? {
                    reply.payload["status"] == "error"
                        ? reply.payload["response"]?["reason"]?.stringValue : "not an error: \(reply.payload.serialized())"
                }
                #expect(reason(try await socket.join("room1", ref: "1")) == "unmatched topic")
                #expect(reason(try await socket.join("realtime:", ref: "2")) == "TopicNameRequired: You must provide a topic name")
                #expect(
                    reason(try await socket.join("realtime:a", ref: "3", token: "not-a-jwt")) == "MalformedJWT: The token provided is not a valid JWT"
                )
                #expect(
                    reason(try await socket.join("realtime:a", ref: "4", token: foreign)) == "JwtSignatureError: Failed to validate JWT signature")
                #expect(
                    reason(try await socket.join("realtime:a", ref: "5", token: expired))?.hasPrefix("InvalidJWTToken: Token has expired") == true)

                try await socket.send(
                    PhoenixMessage(joinRef: "9", ref: "6", topic: "realtime:never-joined", event: "broadcast", payload: .object(["event": "x"])))
                #expect(reason(try await socket.receive("the reply to an unjoined topic")) == "unmatched topic")

                // a binding the policy refuses: the join is ok, then a system error
                let reply = try await socket.join(
                    "realtime:secret", ref: "7", bindings: [["event": "*", "schema": "public", "table": "schema_migrations"]])
                #expect(reply.payload["status"] == "ok")
                let system = try await socket.receive("the binding error")
                #expect(system.event == "system")
                #expect(system.payload["status"] == "error")
                #expect(system.payload["message"]?.stringValue?.hasPrefix("Unable to subscribe to changes with given parameters.") == true)
            }
        }
    }

    @Test func missingApikeyIsReportedOnJoinAndAJoinTokenFixesIt() async throws {
        try await withLiveApp { app in
            let token = try await app.token()
            try await withSocket(app, apikey: nil) { socket in
                let refused = try await socket.joinText("realtime:room1", ref: "1")
                #expect(
                    refused
                        == #"{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"error","response":{"reason":"InvalidJWTToken: API key is missing"}},"ref":"1"}"#
                )
                let accepted = try await socket.join("realtime:room1", ref: "2", token: token)
                #expect(accepted.payload["status"] == "ok")
            }
        }
    }

    @Test func broadcastReachesOtherMembersButNotTheSender() async throws {
        try await withLiveApp { app in
            let token = try await app.token()
            let listenerReady = AsyncQueue<Void>()
            let senderDone = AsyncQueue<Void>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await withSocket(app, apikey: token, vsn: "2.0.0") { listener in
                        _ = try await listener.join("realtime:room1", ref: "1")
                        listenerReady.push(())
                        let relayed = try await listener.receiveText("the other socket's broadcast")
                        #expect(
                            sameJSON(
                                relayed, #"[null,null,"realtime:room1","broadcast",{"type":"broadcast","event":"hi","payload":{"from":"sender"}}]"#),
                            "\(relayed)")
                        _ = try await withDeadline(.seconds(10), "the sender to finish") { try await senderDone.next() }
                    }
                }
                group.addTask {
                    try await withSocket(app, apikey: token) { sender in
                        _ = try await withDeadline(.seconds(30), "the listener to join") { try await listenerReady.next() }
                        _ = try await sender.join("realtime:room1", ref: "1", config: ["broadcast": .object(["ack": true, "self": false])])
                        try await sender.send(
                            PhoenixMessage(
                                joinRef: "1", ref: "2", topic: "realtime:room1", event: "broadcast",
                                payload: .object(["type": "broadcast", "event": "hi", "payload": .object(["from": "sender"])])))
                        // without self, the ack is the only frame the sender gets
                        #expect(
                            try await sender.receiveText("the ack")
                                == #"{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2"}"#)
                        try await sender.sendText(#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"3"}"#)
                        #expect(try await sender.receive("the heartbeat reply").topic == "phoenix")
                        senderDone.push(())
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func unsupportedVsnIsRefusedAtUpgrade() async throws {
        try await withLiveApp { app in
            await #expect(throws: (any Error).self) {
                try await WebSocketClient.connect(
                    url: "ws://127.0.0.1:\(app.port)/realtime/v1/websocket?vsn=3.0.0", logger: Logger(label: "marquee-test-socket")
                ) { _, _, _ in
                    Issue.record("the upgrade with vsn 3.0.0 was accepted")
                }
            }
        }
    }
}
