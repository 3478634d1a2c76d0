import Testing

@testable import MarqueeCore

private func joinPayload(_ config: JSONObject, token: String? = nil) -> JSONValue {
    var root: JSONObject = ["config": .object(config)]
    if let token { root["access_token"] = .string(token) }
    return .object(root)
}

private func parseError(_ payload: JSONValue) -> String? {
    do {
        _ = try JoinConfig.parse(payload)
        return nil
    } catch {
        return error.message
    }
}

private let insertTodos: JSONObject = ["event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.1"]
private let everythingPublic: JSONObject = ["event": "*", "schema": "public"]

@Suite struct JoinConfigBindingTests {
    @Test func echoIsTheClientsMapPlusAnIntegerID() throws {
        let config = try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(insertTodos), .object(everythingPublic)])]))
        #expect(config.bindings.count == 2)
        #expect(config.bindingErrors.isEmpty)
        for (binding, sent) in zip(config.bindings, [insertTodos, everythingPublic]) {
            let echo = try #require(binding.echo.objectValue)
            #expect(echo.count == sent.count + 1)
            // every key the client sent comes back unchanged, in the client's order, then the id
            #expect(Array(echo.keys.dropLast()) == sent.keys)
            for (key, value) in sent { #expect(echo[key] == value, "\(key)") }
            #expect(echo["id"] == .int(binding.id))
            #expect(binding.id > 0)
            #expect(binding.id < 1 << 31)
        }
        #expect(config.bindings[0].id != config.bindings[1].id)
    }

    @Test func equalMapsGetEqualIDsWhateverTheKeyOrder() throws {
        let reordered: JSONObject = ["filter": "id=eq.1", "table": "todos", "event": "INSERT", "schema": "public"]
        let first = try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(insertTodos)])]))
        let second = try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(reordered), .object(insertTodos)])]))
        #expect(second.bindings[0].id == first.bindings[0].id)
        #expect(second.bindings[1].id == first.bindings[0].id)
        #expect(second.bindings[0].echo.objectValue?.keys == ["filter", "table", "event", "schema", "id"])
        var otherFilter = insertTodos
        otherFilter["filter"] = "id=eq.2"
        let third = try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(otherFilter)])]))
        #expect(third.bindings[0].id != first.bindings[0].id)
    }

    @Test func nothingIsDefaultedOrRecasedInTheEcho() throws {
        let sent: JSONObject = ["event": "insert", "table": "todos"]
        let config = try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(sent)])]))
        let binding = try #require(config.bindings.first)
        #expect(binding.echo == .object(["event": "insert", "table": "todos", "id": .int(binding.id)]))
        // the parsed form has the defaults
        #expect(binding.schema == "public")
        #expect(binding.events == .only(.insert))
    }

    @Test func parsedFields() throws {
        let sent: JSONObject = [
            "event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": "event_id=eq.7", "select": .array(["available"]),
        ]
        let binding = try #require(try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(sent)])])).bindings.first)
        #expect(binding.events == .only(.update))
        #expect(binding.table == "event_tickets")
        #expect(binding.filterText == "event_id=eq.7")
        #expect(binding.select == ["available"])
        let star = try #require(try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(everythingPublic)])])).bindings.first)
        #expect(star.events == .all)
        #expect(star.table == "*")
    }

    @Test func noBindingsMeansAnEmptyList() throws {
        #expect(try JoinConfig.parse(joinPayload([:])).bindings.isEmpty)
        #expect(try JoinConfig.parse(joinPayload(["postgres_changes": .array([])])).bindings.isEmpty)
        #expect(try JoinConfig.parse(joinPayload(["postgres_changes": .null])).bindings.isEmpty)
        #expect(try JoinConfig.parse(.object([:])).bindings.isEmpty)
    }

    @Test func aBindingWithoutSchemaOrTableIsReportedButStillEchoed() throws {
        let config = try JoinConfig.parse(joinPayload(["postgres_changes": .array([.object(["event": "*"]), .object(insertTodos)])]))
        #expect(config.bindings.count == 2)
        #expect(config.bindings[0].echo.objectValue?["event"] == "*")
        #expect(config.bindings[0].id > 0)
        #expect(config.bindingErrors.count == 1)
        #expect(config.bindingErrors.first?.hasPrefix("No subscription params provided.") == true)
    }
}

@Suite struct JoinConfigOptionTests {
    @Test func flexibleBooleans() throws {
        let config = try JoinConfig.parse(
            joinPayload([
                "broadcast": .object(["self": "true", "ack": "TRUE"]),
                "presence": .object(["enabled": "True", "key": "me"]),
                "private": "true",
                "marquee": .object(["snapshot": true]),
            ]))
        #expect(config.broadcastSelf)
        #expect(config.broadcastAck)
        #expect(config.presenceEnabled)
        #expect(config.presenceKey == "me")
        #expect(config.isPrivate)
        #expect(config.snapshot)

        let off = try JoinConfig.parse(
            joinPayload([
                "broadcast": .object(["self": "false", "ack": false]),
                "presence": .object(["enabled": "FALSE"]),
                "private": false,
            ]))
        #expect(!off.broadcastSelf)
        #expect(!off.broadcastAck)
        #expect(!off.presenceEnabled)
        #expect(!off.isPrivate)

        let junk = try JoinConfig.parse(joinPayload(["broadcast": .object(["self": "yes", "ack": 1]), "private": "1"]))
        #expect(!junk.broadcastSelf)
        #expect(!junk.broadcastAck)
        #expect(!junk.isPrivate)
    }

    @Test func defaults() throws {
        let config = try JoinConfig.parse(joinPayload([:]))
        #expect(!config.broadcastSelf && !config.broadcastAck && !config.presenceEnabled && !config.isPrivate && !config.snapshot)
        #expect(config.presenceKey == "")
        #expect(config.accessToken == nil)
    }

    @Test func accessTokens() throws {
        #expect(try JoinConfig.parse(joinPayload([:], token: "eyJ.a.b")).accessToken == "eyJ.a.b")
        // an sb_ key means "use the connect token"
        #expect(try JoinConfig.parse(joinPayload([:], token: "sb_publishable_x")).accessToken == nil)
        #expect(try JoinConfig.parse(.object(["user_token": "eyJ.u.t"])).accessToken == "eyJ.u.t")
        // Supabase takes user_token before access_token (docs/realtime-protocol.md §4, Token)
        let both = try JoinConfig.parse(.object(["user_token": "eyJ.user", "access_token": "eyJ.access"]))
        #expect(both.accessToken == "eyJ.user")
        let keyAndUser = try JoinConfig.parse(.object(["user_token": "eyJ.user", "access_token": "sb_key"]))
        #expect(keyAndUser.accessToken == "eyJ.user")
    }

    @Test(arguments: [
        (JSONValue.array([]), "the phx_join payload must be an object"),
        (.string("config"), "the phx_join payload must be an object"),
        (.null, "the phx_join payload must be an object"),
        (.object(["config": "x"]), "config must be an object"),
        (.object(["config": .array([])]), "config must be an object"),
        (.object(["config": .object(["postgres_changes": .object([:])])]), "config.postgres_changes must be an array"),
        (.object(["config": .object(["postgres_changes": "INSERT"])]), "config.postgres_changes must be an array"),
        (.object(["config": .object(["postgres_changes": .array(["INSERT"])])]), "each postgres_changes binding must be an object"),
        (.object(["config": .object(["postgres_changes": .array([.object(insertTodos), 1])])]), "each postgres_changes binding must be an object"),
    ])
    func badShapesAreRefused(payload: JSONValue, reason: String) {
        #expect(parseError(payload) == reason)
    }
}
