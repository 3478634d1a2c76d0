import Testing

@testable import MarqueeCore

private let okReply: JSONValue = .object(["status": "ok", "response": .object([:])])

private func frameError(_ body: () throws(FrameError) -> PhoenixMessage) -> FrameError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

/// Builds a kind-3 user broadcast push the way realtime-js's serializer lays it out.
private func kind3(
    joinRef: String = "1", ref: String = "2", topic: String = "realtime:room1", event: String = "ping", meta: String = "",
    encoding: UInt8 = 1, payload: String = #"{"n":1}"#
) -> [UInt8] {
    let fields = [joinRef, ref, topic, event, meta].map { Array($0.utf8) }
    return [3] + fields.map { UInt8($0.count) } + [encoding] + fields.flatMap { $0 } + Array(payload.utf8)
}

@Suite struct PhoenixSerializerNegotiationTests {
    @Test func vsnSelectsTheFormat() {
        #expect(PhoenixSerializer(vsn: nil) == .v1)
        #expect(PhoenixSerializer(vsn: "") == .v1)
        #expect(PhoenixSerializer(vsn: "1.0.0") == .v1)
        #expect(PhoenixSerializer(vsn: "2.0.0") == .v2)
        #expect(PhoenixSerializer(vsn: "3.0.0") == nil)
        #expect(PhoenixSerializer(vsn: "latest") == nil)
    }
}

@Suite struct PhoenixSerializerEncodeTests {
    @Test func v1HasRefButNeverJoinRef() {
        let reply = PhoenixMessage(joinRef: "1", ref: "7", topic: "realtime:room1", event: "phx_reply", payload: okReply)
        #expect(
            PhoenixSerializer.v1.encode(reply)
                == #"{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"7"}"#)
    }

    @Test func v1WritesNullRefWhenAbsent() {
        let push = PhoenixMessage(joinRef: "1", ref: nil, topic: "realtime:room1", event: "system", payload: .object(["channel": "room1"]))
        let text = PhoenixSerializer.v1.encode(push)
        #expect(text == #"{"topic":"realtime:room1","event":"system","payload":{"channel":"room1"},"ref":null}"#)
        #expect(!text.contains("join_ref"))
    }

    @Test func v2IsAnArrayOfFive() {
        let reply = PhoenixMessage(joinRef: "1", ref: "3", topic: "phoenix", event: "phx_reply", payload: okReply)
        #expect(PhoenixSerializer.v2.encode(reply) == #"["1","3","phoenix","phx_reply",{"status":"ok","response":{}}]"#)
        let fanOut = PhoenixMessage(topic: "realtime:room1", event: "postgres_changes", payload: .object(["ids": .array([5])]))
        #expect(PhoenixSerializer.v2.encode(fanOut) == #"[null,null,"realtime:room1","postgres_changes",{"ids":[5]}]"#)
    }

    @Test func stringsAreEscaped() {
        let message = PhoenixMessage(ref: "a\"b", topic: "realtime:q\"t\\", event: "e\n", payload: .object([:]))
        #expect(PhoenixSerializer.v1.encode(message) == #"{"topic":"realtime:q\"t\\","event":"e\n","payload":{},"ref":"a\"b"}"#)
    }

    @Test(arguments: PhoenixSerializer.allCases)
    func encodeThenDecodeKeepsTheMessage(serializer: PhoenixSerializer) throws {
        let message = PhoenixMessage(
            joinRef: serializer == .v2 ? "4" : nil, ref: "9", topic: "realtime:é 😀", event: "broadcast",
            payload: .object(["type": "broadcast", "event": "ping", "payload": .object(["n": 1, "s": "x\u{1}y"])]))
        var decoded = try serializer.decode(serializer.encode(message))
        // key order of the payload is JSONValueParsingTests' concern
        decoded.payload = sortingKeys(decoded.payload)
        var expected = message
        expected.payload = sortingKeys(message.payload)
        #expect(decoded == expected)
    }
}

@Suite struct PhoenixSerializerDecodeTests {
    @Test func v1Object() throws {
        let text = #"{"event":"phx_join","payload":{"config":{}},"topic":"realtime:room1","ref":"1","join_ref":"1"}"#
        let message = try PhoenixSerializer.v1.decode(text)
        #expect(
            message == PhoenixMessage(joinRef: "1", ref: "1", topic: "realtime:room1", event: "phx_join", payload: .object(["config": .object([:])])))
    }

    @Test func v1WithoutJoinRefOrPayload() throws {
        let message = try PhoenixSerializer.v1.decode(#"{"topic":"phoenix","event":"heartbeat","ref":null}"#)
        #expect(message.joinRef == nil)
        #expect(message.ref == nil)
        #expect(message.payload == .object([:]))
    }

    @Test func v2Array() throws {
        let message = try PhoenixSerializer.v2.decode(#"[null,"3","phoenix","heartbeat",{}]"#)
        #expect(message == PhoenixMessage(joinRef: nil, ref: "3", topic: "phoenix", event: "heartbeat", payload: .object([:])))
    }

    @Test func nullPayloadBecomesEmptyObject() throws {
        #expect(try PhoenixSerializer.v2.decode(#"["1","2","realtime:a","phx_leave",null]"#).payload == .object([:]))
    }

    @Test func numericRefsAreKeptAsText() throws {
        let v1 = try PhoenixSerializer.v1.decode(#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":42,"join_ref":7}"#)
        #expect(v1.ref == "42")
        #expect(v1.joinRef == "7")
        let v2 = try PhoenixSerializer.v2.decode(#"[1,2,"realtime:a","phx_join",{}]"#)
        #expect(v2.joinRef == "1")
        #expect(v2.ref == "2")
        // the reply echoes the ref as a string, as realtime-py requires
        #expect(PhoenixSerializer.v1.encode(PhoenixMessage(ref: v1.ref, topic: "phoenix", event: "phx_reply")).hasSuffix(#""ref":"42"}"#))
    }

    @Test(arguments: [
        ("not json", "the frame is not valid JSON"),
        ("{\"topic\":", "the frame is not valid JSON"),
        ("", "the frame is not valid JSON"),
        ("42", "a frame must be a JSON object (vsn 1.0.0) or array (vsn 2.0.0)"),
        ("\"heartbeat\"", "a frame must be a JSON object (vsn 1.0.0) or array (vsn 2.0.0)"),
        ("null", "a frame must be a JSON object (vsn 1.0.0) or array (vsn 2.0.0)"),
        ("[null,\"1\",\"phoenix\",\"heartbeat\"]", "a 2.0.0 frame is an array of 5 items: [join_ref, ref, topic, event, payload]"),
        ("[null,\"1\",\"phoenix\",\"heartbeat\",{},1]", "a 2.0.0 frame is an array of 5 items: [join_ref, ref, topic, event, payload]"),
        ("[]", "a 2.0.0 frame is an array of 5 items: [join_ref, ref, topic, event, payload]"),
        ("{\"event\":\"heartbeat\",\"payload\":{},\"ref\":\"1\"}", "the frame has no topic"),
        ("{\"topic\":\"\",\"event\":\"heartbeat\",\"payload\":{},\"ref\":\"1\"}", "the frame has no topic"),
        ("[null,\"1\",5,\"heartbeat\",{}]", "the frame has no topic"),
        ("{\"topic\":\"phoenix\",\"payload\":{},\"ref\":\"1\"}", "the frame has no event"),
        ("[null,\"1\",\"phoenix\",null,{}]", "the frame has no event"),
        ("[null,\"1\",\"phoenix\",\"\",{}]", "the frame has no event"),
    ])
    func malformedFramesThrow(text: String, reason: String) {
        for serializer in PhoenixSerializer.allCases {
            #expect(frameError { () throws(FrameError) in try serializer.decode(text) } == FrameError(reason), "\(serializer) \(text)")
        }
    }
}

@Suite struct BinaryBroadcastTests {
    @Test func kind3BecomesABroadcast() throws {
        let message = try PhoenixSerializer.decodeBinaryBroadcast(kind3())
        #expect(message.joinRef == "1")
        #expect(message.ref == "2")
        #expect(message.topic == "realtime:room1")
        #expect(message.event == "broadcast")
        #expect(message.payload == .object(["type": "broadcast", "event": "ping", "payload": .object(["n": 1])]))
    }

    @Test func metaIsCarriedOver() throws {
        let message = try PhoenixSerializer.decodeBinaryBroadcast(kind3(meta: #"{"id":"abc"}"#))
        #expect(message.payload["meta"] == .object(["id": "abc"]))
        #expect(message.payload["payload"] == .object(["n": 1]))
    }

    @Test func emptyRefsBecomeNil() throws {
        let message = try PhoenixSerializer.decodeBinaryBroadcast(kind3(joinRef: "", ref: ""))
        #expect(message.joinRef == nil)
        #expect(message.ref == nil)
    }

    @Test func utf8Fields() throws {
        let message = try PhoenixSerializer.decodeBinaryBroadcast(kind3(topic: "realtime:salle-é", event: "déjà", payload: #"{"t":"😀"}"#))
        #expect(message.topic == "realtime:salle-é")
        #expect(message.payload["event"] == "déjà")
        #expect(message.payload["payload"] == .object(["t": "😀"]))
    }

    @Test func everyTruncationIsRefused() {
        let full = kind3()
        let payloadStart = full.count - #"{"n":1}"#.utf8.count
        // cut inside the header or inside one of the length-prefixed fields
        for length in 0...payloadStart {
            let error = frameError { () throws(FrameError) in try PhoenixSerializer.decodeBinaryBroadcast(Array(full.prefix(length))) }
            #expect(error != nil, "prefix of \(length) bytes was accepted")
        }
        #expect(
            frameError { () throws(FrameError) in try PhoenixSerializer.decodeBinaryBroadcast(Array(full.prefix(10))) }
                == FrameError("the binary frame is shorter than its header says"))
        // cut inside the JSON payload
        #expect(
            frameError { () throws(FrameError) in try PhoenixSerializer.decodeBinaryBroadcast(Array(full.dropLast(1))) }
                == FrameError("the binary broadcast payload is not valid JSON"))
    }

    @Test func otherKindsAndEncodingsAreRefused() {
        var kind4 = kind3()
        kind4[0] = 4
        #expect(
            frameError { () throws(FrameError) in try PhoenixSerializer.decodeBinaryBroadcast(kind4) }
                == FrameError("binary frames are only accepted as user broadcast pushes (kind 3)"))
        #expect(
            frameError { () throws(FrameError) in try PhoenixSerializer.decodeBinaryBroadcast(kind3(encoding: 0, payload: "raw")) }
                == FrameError("binary broadcast payloads must be JSON (encoding 1)"))
        var badUTF8 = kind3(topic: "realtime:ab")
        badUTF8[7 + 1 + 1 + 9] = 0xFF  // the "a" of the topic's name
        #expect(
            frameError { () throws(FrameError) in try PhoenixSerializer.decodeBinaryBroadcast(badUTF8) }
                == FrameError("the binary frame has a field that is not UTF-8"))
    }
}
