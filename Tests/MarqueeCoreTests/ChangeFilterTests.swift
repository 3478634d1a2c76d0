import Testing

@testable import MarqueeCore

private typealias Condition = ChangeFilter.Condition

private func parse(_ text: String?) throws -> ChangeFilter { try ChangeFilter.parse(text) }

private func parseError(_ text: String) -> String? {
    do {
        _ = try ChangeFilter.parse(text)
        return nil
    } catch {
        return error.message
    }
}

private func matches(_ filter: String, _ record: JSONObject) throws -> Bool { try parse(filter).matches(record) }

private func indexKey(_ text: String) throws -> [String]? { try parse(text).indexKey.map { [$0.column, $0.value] } }

private let uuid = "639f86b1-738b-43ed-bb09-c8d3f3bafa30"

// MARK: - Parsing

@Suite struct ChangeFilterParsingTests {
    @Test(arguments: ChangeFilter.Operator.allCases)
    func everyOperatorPlainAndNegated(op: ChangeFilter.Operator) throws {
        let value = op == .in ? "(1,2)" : op == .is ? "null" : "abc"
        let expected = op == .in ? ["1", "2"] : [op == .is ? "null" : "abc"]
        let plain = try parse("col_1=\(op.rawValue).\(value)")
        #expect(plain.conditions == [Condition(column: "col_1", op: op, negated: false, values: expected)])
        let negated = try parse("col_1=not.\(op.rawValue).\(value)")
        #expect(negated.conditions == [Condition(column: "col_1", op: op, negated: true, values: expected)])
        #expect(negated != plain)
    }

    @Test func blankOrMissingIsAll() throws {
        #expect(try parse(nil) == .all)
        #expect(try parse("") == .all)
        #expect(try parse("  \t\n ") == .all)
        #expect(ChangeFilter.all.conditions.isEmpty)
        #expect(ChangeFilter.all.matches([:]))
        #expect(ChangeFilter.all.indexKey == nil)
    }

    @Test func severalConditionsAndColumns() throws {
        let filter = try parse(" id=gt.0, id=lt.100 ,name=eq.x.y=z ")
        #expect(
            filter.conditions == [
                Condition(column: "id", op: .gt, values: ["0"]), Condition(column: "id", op: .lt, values: ["100"]),
                Condition(column: "name", op: .eq, values: ["x.y=z"]),
            ])
        #expect(filter.columns == ["id", "name"])
    }

    @Test func quotedValues() throws {
        #expect(try parse(#"name=eq."a,b""#).conditions[0].values == ["a,b"])
        #expect(try parse(#"name=eq."say \"hi\", \\ ok""#).conditions[0].values == [#"say "hi", \ ok"#])
        #expect(try parse(#"name=eq."""#).conditions[0].values == [""])
        #expect(try parse("name=eq.").conditions[0].values == [""])
        // Not a whole quoted value: kept as written, like Supabase.
        #expect(try parse(#"name=eq."a"b"#).conditions[0].values == [#""a"b"#])
        #expect(try parse(#"name=eq.a"b"#).conditions[0].values == [#"a"b"#])
        // A quote that doesn't open after `.`, `(` or `,` doesn't protect commas.
        #expect(parseError(#"name=eq.a"b,c""#) == #"Error parsing `filter` params: ["c\""]"#)
        let two = try parse(#"a=eq."x,y",b=neq.(p,q)"#)
        #expect(two.conditions.map(\.values) == [["x,y"], ["(p,q)"]])
    }

    @Test func inLists() throws {
        #expect(try parse("id=in.(1,2,3)").conditions[0].values == ["1", "2", "3"])
        #expect(try parse(#"name=in.( "a,b" , c d ,"d\"e",x\,y)"#).conditions[0].values == ["a,b", "c d", #"d"e"#, "x,y"])
        #expect(try parse("id=in.()").conditions[0].values == [])
        #expect(try parse("id=in.( )").conditions[0].values == [])
        let filter = try parse(#"id=not.in.(1,2),name=in.("x)",y)"#)
        #expect(filter.conditions.count == 2)
        #expect(filter.conditions[0] == Condition(column: "id", op: .in, negated: true, values: ["1", "2"]))
        #expect(filter.conditions[1].values == ["x)", "y"])
        let hundred = (1...100).map(String.init).joined(separator: ",")
        #expect(try parse("id=in.(\(hundred))").conditions[0].values.count == 100)
    }

    @Test func supabaseErrorMessages() {
        #expect(parseError("subject=foo.hey") == #"Error parsing `filter` params: ["foo", "hey"]"#)
        #expect(parseError("undefined") == #"Error parsing `filter` params: ["undefined"]"#)
        #expect(parseError("id=eq") == #"Error parsing `filter` params: ["eq"]"#)
        #expect(parseError("id=not.nope.1") == #"Error parsing `filter` params: ["nope", "1"]"#)
        #expect(parseError("id=in.1,2") == "Error parsing `filter` params: `in` filter value must be wrapped by parentheses")
        #expect(parseError("id=in.(1,2") == "Error parsing `filter` params: `in` filter value must be wrapped by parentheses")
        #expect(parseError("id=eq.1,,id=eq.2") == "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)")
        let many = (1...101).map(String.init).joined(separator: ",")
        #expect(parseError("id=in.(\(many))") == "Error parsing `filter` params: too many values for `in` filter. Maximum 100")
    }

    @Test func otherErrors() throws {
        #expect(parseError("=eq.1") == #"Error parsing `filter` params: missing column name in "=eq.1""#)
        #expect(parseError("a-b=eq.1")?.contains(#"invalid column name "a-b""#) == true)
        #expect(parseError("a b=eq.1")?.contains("invalid column name") == true)
        #expect(parseError("x=is.maybe") == "Error parsing `filter` params: invalid value for is filter: must be null, true, false, or unknown")
        #expect(parseError("x=match.(ab")?.hasPrefix("Error parsing `filter` params: invalid regular expression for match filter") == true)
        #expect(parseError(#"x=like.ab\"#) == "Error parsing `filter` params: LIKE pattern must not end with escape character")
        #expect(parseError(#"x=in.("a,b)"#)?.hasPrefix("Error parsing `filter` params: malformed `in` filter value") == true)
        #expect(parseError("x=in.(a,,b)")?.hasPrefix("Error parsing `filter` params: malformed `in` filter value") == true)
        #expect(try parse("x=is.NULL").conditions[0].values == ["null"])
        #expect(try parse("Prénom_2=eq.1").columns == ["Prénom_2"])
    }

    @Test func limits() throws {
        let sixteen = (1...ChangeFilter.maxConditions).map { "c\($0)=eq.\($0)" }.joined(separator: ",")
        #expect(try parse(sixteen).conditions.count == 16)
        #expect(parseError(sixteen + ",c17=eq.17") == "Error parsing `filter` params: too many conditions in filter. Maximum 16")
        let twentyThousand = Array(repeating: "id=gt.0", count: 20_000).joined(separator: ",")
        #expect(parseError(twentyThousand) == "Error parsing `filter` params: filter is too long (159999 bytes). Maximum 1024 bytes")
        let longest = "s=eq." + String(repeating: "x", count: ChangeFilter.maxFilterBytes - 5)
        #expect(try parse("  \(longest)\n").conditions[0].values[0].utf8.count == 1019)
        #expect(parseError(longest + "x") == "Error parsing `filter` params: filter is too long (1025 bytes). Maximum 1024 bytes")
        for op in ["like", "ilike", "match", "imatch"] {
            let pattern = String(repeating: "a", count: ChangeFilter.maxPatternBytes)
            #expect(try parse("s=\(op).\(pattern)").conditions.count == 1)
            #expect(
                parseError("s=not.\(op).\(pattern)a")
                    == "Error parsing `filter` params: pattern for `\(op)` filter is too long (257 bytes). Maximum 256 bytes")
        }
        // Bytes, not characters; and the value after unquoting.
        #expect(parseError("s=like.\(String(repeating: "é", count: 129))")?.contains("too long (258 bytes)") == true)
        #expect(try parse("s=like.\"\(String(repeating: "a", count: 256))\"").conditions.count == 1)
        #expect(
            [ChangeFilter.maxConditions, ChangeFilter.maxFilterBytes, ChangeFilter.maxPatternBytes, ChangeFilter.maxInValues] == [16, 1024, 256, 100])
    }

    @Test func regularExpressionRefusals() throws {
        #expect(
            parseError("x=match.(ab")
                == #"Error parsing `filter` params: invalid regular expression for match filter: "(ab" (parentheses () not balanced)"#)
        #expect(
            parseError("x=imatch.a**")
                == #"Error parsing `filter` params: invalid regular expression for imatch filter: "a**" (quantifier operand invalid)"#)
        #expect(
            parseError(#"x=match.(a)\1"#)
                == #"Error parsing `filter` params: unsupported regular expression for match filter: "(a)\\1" (back references (\1) are not supported)"#
        )
        #expect(parseError("x=match.a(?=b)")?.hasPrefix("Error parsing `filter` params: unsupported regular expression for match filter") == true)
        #expect(
            parseError("x=match.(a{100}){100}")?.hasPrefix(
                #"Error parsing `filter` params: regular expression for match filter is too complex: "(a{100}){100}" (the pattern needs more than 1000 states"#
            )
                == true)
        #expect(try parse("x=match.(a{30}){30}").conditions.count == 1)
    }

    @Test func hostileInputNeverCrashes() {
        let pieces = ["=", ".", ",", "(", ")", "\"", "\\", "not.", "in.", "eq.", "is.", "like.", "match.", "a", "1", " ", "%", "é", "[", "{"]
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        var parsed = 0
        for _ in 0..<3000 {
            var text = ""
            for _ in 0..<Int(seed % 12) {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                text += pieces[Int(seed >> 33) % pieces.count]
            }
            if let filter = try? ChangeFilter.parse(text) {
                parsed += 1
                _ = filter.matches(["a": "x", "a1": 1, "1": .null])
                _ = filter.indexKey
            }
        }
        #expect(parsed > 0)
    }
}

// MARK: - Matching

@Suite struct ChangeFilterMatchingTests {
    @Test(arguments: [
        // (filter, value, expected)
        ("n=eq.42", JSONValue.int(42), true), ("n=eq.42.0", .int(42), true), ("n=eq.4.2e1", .int(42), true),
        ("n=eq.43", .int(42), false), ("n=neq.43", .int(42), true), ("n=neq.42", .int(42), false),
        ("n=lt.100", .int(42), true), ("n=lt.42", .int(42), false), ("n=lte.42", .int(42), true),
        ("n=gt.-1", .int(42), true), ("n=gt.9", .int(42), true), ("n=gte.42.5", .int(42), false),
        ("n=eq.abc", .int(42), false), ("n=neq.abc", .int(42), false), ("n=not.eq.abc", .int(42), false),
        ("n=eq.9223372036854775807", .int(.max), true), ("n=lt.99999999999999999999", .int(.max), true),
        ("n=eq.0.5", .double(0.5), true), ("n=eq.0.50", .double(0.5), true), ("n=lt.0.6", .double(0.5), true),
        ("n=eq.42", .double(42), true), ("n=gt.1e3", .double(999.5), false),
        ("n=eq.12.5", .raw("12.50"), true), ("n=eq.12.5000000000000000001", .raw("12.50"), false),
        ("n=lt.12.5000000000000000001", .raw("12.50"), true), ("n=gt.-13", .raw("-12.25"), true),
        ("n=lt.-12.3", .raw("-12.25"), false), ("n=eq.x", .raw("12"), false),
        ("s=eq.hello", .string("hello"), true), ("s=eq.Hello", .string("hello"), false),
        ("s=neq.Hello", .string("hello"), true), ("s=eq.42", .string("42.0"), false), ("s=eq.42.0", .string("42.0"), true),
        ("s=lt.b", .string("a"), true), ("s=lt.B", .string("a"), false), ("s=gt.Z", .string("a"), true),
        ("s=gte.2024-03-05 12:00:00+00", .string("2024-03-05 12:34:56+00"), true),
        // timestamps in their to_jsonb form compare by time with literals of any ISO shape
        ("t=gte.2026-12-03 19:00:00+00", .string("2026-12-03T19:52:55.304141+00:00"), true),
        ("t=lt.2026-12-03T20:00:00Z", .string("2026-12-03T19:52:55.304141+00:00"), true),
        ("t=eq.2026-12-04 01:22:55.304141+05:30", .string("2026-12-03T19:52:55.304141+00:00"), true),
        ("t=eq.2026-12-03 19:52:55.3041+00", .string("2026-12-03T19:52:55.304141+00:00"), false),
        ("t=gt.2026-12-03", .string("2026-12-03T19:52:55+00:00"), true), ("t=lt.infinity", .string("2026-12-03T19:52:55+00:00"), true),
        ("t=gt.2026-12-03 19:52:54+0100", .string("2026-12-03T19:52:55"), true),
        ("u=eq.639F86B1-738B-43ED-BB09-C8D3F3BAFA30", .string(uuid), true),
        ("u=eq.\(uuid)", .string(uuid.uppercased()), true), ("u=neq.\(uuid)", .string(uuid), false),
        ("u=in.(b423f213-ac24-402a-95ea-cf1d94d8e9f0,639F86B1-738B-43ED-BB09-C8D3F3BAFA30)", .string(uuid), true),
        ("b=eq.true", .bool(true), true), ("b=eq.t", .bool(true), true), ("b=eq.TRUE", .bool(true), true),
        ("b=eq.f", .bool(true), false), ("b=neq.false", .bool(true), true), ("b=eq.1", .bool(true), false),
        ("b=lt.true", .bool(false), true), ("b=eq.true", .string("true"), true), ("b=eq.t", .string("true"), false),
        (#"j=eq."{\"b\":1,\"a\":[1,2]}""#, .raw("{\"a\": [1, 2], \"b\": 1.0}"), true), ("j=eq.{\"a\":2}", .raw("{\"a\":1}"), false),
        ("j=neq.[1]", .raw("[1]"), false), ("j=eq.x", .raw("{\"a\":1}"), false), ("j=lt.5", .raw("{\"a\":1}"), false),
        ("j=eq.null", .raw("null"), true), ("j=is.null", .raw("null"), false),
    ])
    func comparisons(filter: String, value: JSONValue, expected: Bool) throws {
        let column = String(filter.prefix(while: { $0 != "=" }))
        #expect(try matches(filter, [column: value]) == expected)
    }

    @Test(arguments: ["eq.1", "neq.1", "lt.1", "gte.1", "in.(1,2)", "not.in.(1,2)", "like.%", "ilike.%", "match..", "not.eq.1", "not.like.x"])
    func nullAndMissingNeverMatch(condition: String) throws {
        #expect(try matches("x=\(condition)", ["x": .null]) == false)
        #expect(try matches("x=\(condition)", ["y": 1]) == false)
    }

    @Test func isAndIsDistinct() throws {
        let cases: [(String, JSONValue?, Bool)] = [
            ("is.null", .null, true), ("is.null", 0, false), ("not.is.null", .null, false), ("not.is.null", 0, true),
            ("is.null", nil, false), ("not.is.null", nil, false),
            ("is.true", true, true), ("is.true", false, false), ("is.true", .null, false), ("not.is.true", .null, true),
            ("is.false", false, true), ("not.is.false", false, false), ("is.unknown", .null, true), ("is.unknown", true, false),
            ("not.is.unknown", true, true), ("is.true", "true", false), ("not.is.true", "true", false),
            ("isdistinct.5", .null, true), ("isdistinct.5", 5, false), ("isdistinct.5", 6, true), ("isdistinct.5", nil, false),
            ("not.isdistinct.5", .null, false), ("not.isdistinct.5", 5, true), ("isdistinct.abc", 5, false),
        ]
        for (condition, value, expected) in cases {
            var record: JSONObject = [:]
            record["x"] = value
            #expect(try matches("x=\(condition)", record) == expected, "x=\(condition) on \(String(describing: value))")
        }
    }

    @Test func inOperator() throws {
        #expect(try matches("id=in.(1,2,3)", ["id": 2]))
        #expect(try matches("id=in.(1,2,3)", ["id": 4]) == false)
        #expect(try matches("id=not.in.(1,2,3)", ["id": 4]))
        #expect(try matches("id=not.in.(1,2,3)", ["id": 3]) == false)
        #expect(try matches("id=in.(1.0,x)", ["id": 1]))
        // SQL `= any`: no equal element and one unknown comparison is unknown, so neither form matches.
        #expect(try matches("id=in.(2,x)", ["id": 1]) == false)
        #expect(try matches("id=not.in.(2,x)", ["id": 1]) == false)
        #expect(try matches(#"name=in.("a,b",c)"#, ["name": "a,b"]))
        #expect(try matches(#"name=in.("a,b",c)"#, ["name": "a"]) == false)
        #expect(try matches("id=in.()", ["id": 1]) == false)
        #expect(try matches("id=not.in.()", ["id": 1]))
    }

    @Test func likeAndMatch() throws {
        let cases: [(String, String, Bool)] = [
            ("like.hey%", "hey there", true), ("like.hey%", "Hey there", false), ("ilike.hey%", "HEY there", true),
            ("like.%there", "hey there", true), ("like.h_y%", "hey", true), ("like.h_y", "heey", false),
            ("like.*the*", "hey there", true), ("like.100\\%", "100%", true), ("like.100\\%", "1000", false),
            ("like.a.c", "abc", false), ("like.a.c", "a.c", true), ("like.(x)", "(x)", true), ("like.%", "", true),
            ("like.%a%b%", "xxaxxbxx", true), ("like.%a%b%", "xxbxxaxx", false), ("like.line%", "line1\nline2", true),
            ("not.like.hey%", "hey", false), ("not.ilike.x", "y", true), ("ilike.ÉTÉ", "été", true),
            ("match.^h.y", "hey", true), ("match.^H", "hey", false), ("imatch.^H", "hey", true),
            ("match.[0-9]{3}", "ab123", true), ("match.[0-9]{3}", "ab12", false), ("not.match.x", "abc", true),
            // PostgreSQL's default mode: `.` matches a newline, `$` only at the very end.
            ("match.a.b", "a\nb", true), ("match.a$", "a\n", false), ("match.^\\d+$", "123", true), ("imatch.^é", "Été", true),
            ("match.^([0-9a-f-]+)+Z$", uuid, false), ("not.match.^([0-9a-f-]+)+Z$", uuid, true), ("match.(a|aa)+$", "aaaab", false),
            ("like.%a%a%a%a%b", String(repeating: "a", count: 500), false), ("ilike.%A_", "xxab", true),
        ]
        for (condition, value, expected) in cases {
            #expect(try matches("s=\(condition)", ["s": .string(value)]) == expected, "s=\(condition) on \(value)")
        }
        #expect(try matches("n=like.4%", ["n": 42]) == false)
        #expect(try matches("n=match.4", ["n": 42]) == false)
    }

    @Test func allConditionsMustHold() throws {
        let filter = try parse("room=eq.\(uuid.uppercased()),seq=gte.10,seq=lt.20,status=in.(open,held),note=not.is.null")
        let row: JSONObject = ["room": .string(uuid), "seq": 15, "status": "held", "note": "x"]
        #expect(filter.matches(row))
        var changed = row
        changed["seq"] = 20
        #expect(filter.matches(changed) == false)
        changed = row
        changed["status"] = "sold"
        #expect(filter.matches(changed) == false)
        changed = row
        changed["note"] = .null
        #expect(filter.matches(changed) == false)
        changed = row
        changed["room"] = nil
        #expect(filter.matches(changed) == false)
        #expect(filter.columns == ["room", "seq", "status", "note"])
    }

    @Test func editingAConditionReprepares() throws {
        var filter = try parse("name=like.a%")
        #expect(filter.matches(["name": "abc"]))
        filter.conditions[0].values = ["b%"]
        #expect(filter.matches(["name": "abc"]) == false)
        #expect(filter.matches(["name": "bcd"]))
        filter.conditions[0].op = .eq
        #expect(filter.matches(["name": "b%"]))
        filter.conditions[0].negated = true
        #expect(filter.matches(["name": "b%"]) == false)
        let built = ChangeFilter(conditions: [Condition(column: "n", op: .match, values: ["(unclosed"])])
        #expect(built.matches(["n": "(unclosed"]) == false)
    }

    /// An evaluation out of steps is unknown: neither the condition nor its negation lets the row through.
    @Test func outOfStepsIsUnknown() throws {
        let pattern = "((.?){245}){2}\u{1}"
        let long: JSONObject = ["s": .string(String(repeating: "x", count: 10_000))]
        let short: JSONObject = ["s": "xx"]
        #expect(try matches("s=match.\(pattern)", long) == false)
        #expect(try matches("s=not.match.\(pattern)", long) == false)
        #expect(try matches("s=not.match.\(pattern)", short) == true)
        #expect(try matches("s=match.\(pattern)", ["s": "x\u{1}"]) == true)
    }
}

// MARK: - Index key and canonical text

@Suite struct ChangeFilterIndexTests {
    @Test func canonicalText() {
        #expect(ChangeFilter.canonicalText(.null) == nil)
        #expect(ChangeFilter.canonicalText(.int(-7)) == "-7")
        #expect(ChangeFilter.canonicalText(.double(42)) == "42")
        #expect(ChangeFilter.canonicalText(.double(-0.0)) == "0")
        #expect(ChangeFilter.canonicalText(.double(0.1)) == "0.1")
        #expect(ChangeFilter.canonicalText(.double(1e20)) == "100000000000000000000")
        #expect(ChangeFilter.canonicalText(.double(1.5e-7)) == "0.00000015")
        #expect(ChangeFilter.canonicalText(.raw("42.000")) == "42")
        #expect(ChangeFilter.canonicalText(.raw("-0012.340")) == "-12.34")
        #expect(ChangeFilter.canonicalText(.raw("{\"b\": 1, \"a\": null}")) == "{\"a\":null,\"b\":1}")
        #expect(ChangeFilter.canonicalText(.bool(false)) == "false")
        #expect(ChangeFilter.canonicalText(.string(uuid.uppercased())) == uuid)
        #expect(ChangeFilter.canonicalText(.string("Hello 42.0")) == "Hello 42.0")
        #expect(ChangeFilter.canonicalNumber("  +1.50e2 ") == "150")
        #expect(ChangeFilter.canonicalNumber("0.000") == "0")
        #expect(ChangeFilter.canonicalNumber("5e-3") == "0.005")
        #expect(ChangeFilter.canonicalNumber("1e2000") == nil)
        #expect(ChangeFilter.canonicalNumber("1.2.3") == nil)
        #expect(ChangeFilter.canonicalNumber(".") == nil)
        #expect(ChangeFilter.canonicalNumber("-") == nil)
    }

    @Test func indexKeys() throws {
        #expect(try indexKey("id=eq.42") == ["id", "42"])
        #expect(try indexKey("room=eq.\(uuid.uppercased())") == ["room", uuid])
        #expect(try indexKey("a=gt.1,b=not.eq.2,c=eq.x y") == ["c", "x y"])
        #expect(try indexKey(#"c=eq."q,r""#) == ["c", "q,r"])
        #expect(try indexKey("b=eq.true") == ["b", "true"])
        // Type-dependent values are skipped in favour of a later eq condition.
        #expect(try indexKey("a=eq.42.0,b=eq.t,c=eq.1e3,d=eq.007,e=eq.TRUE,f=eq.x") == ["f", "x"])
        #expect(try indexKey("a=eq.0.1000000000000000001") == nil)
        #expect(try indexKey("a=neq.1,b=in.(1),c=not.eq.1,d=eq.9223372036854775807") == nil)
        #expect(try indexKey(#"j=eq.{"a":1}"#) == ["j", #"{"a":1}"#])
        #expect(try indexKey(#"j=eq."{\"b\":1,\"a\":1}""#) == nil)
        #expect(try indexKey("t=eq.2026-12-03 19:52:55+00,d=eq.2026-12-03,x=eq.y") == ["x", "y"])
    }

    /// For every indexable eq filter and record value: the index agrees with `matches`.
    @Test func indexKeyAgreesWithMatches() throws {
        let filterValues = [
            "42", "-7", "0", "0.1", "0.5", "12.5", "100000000000000000000", "9223372036854775807", "abc", "", "true", "false",
            "null", uuid, uuid.uppercased(), "2024-03-05", "42.0", "t", "1e3", #"{"a":1}"#, "[1,2]", "x y",
        ]
        let values: [JSONValue] = [
            .int(42), .int(-7), .int(0), .int(.max), .double(42), .double(0.1), .double(0.5), .double(-7), .double(1e20),
            .raw("42.00"), .raw("12.50"), .raw("-7"), .raw("0.1"), .raw(#"{"a": 1}"#), .raw("[1, 2]"), .raw("null"), .raw("true"),
            .string("42"), .string("42.0"), .string("abc"), .string(""), .string("t"), .string("true"), .string(uuid),
            .string(uuid.uppercased()), .string("2024-03-05"), .string("1e3"), .string("x y"), .string("null"),
            .bool(true), .bool(false), .null,
        ]
        var indexed = 0
        for text in filterValues {
            let filter = try parse("c=eq.\"\(text.replacingOccurrences(of: "\"", with: "\\\""))\"")
            #expect(filter.conditions[0].values == [text])
            guard let key = filter.indexKey else { continue }
            indexed += 1
            for value in values {
                let viaIndex = ChangeFilter.canonicalText(value) == key.value
                #expect(viaIndex == filter.matches(["c": value]), "eq.\(text) vs \(value): index says \(viaIndex)")
            }
        }
        // 42.0, t, 1e3, 9223372036854775807 (no float holds it), and 2024-03-05 (a timestamp of other spellings equals it)
        #expect(indexed == filterValues.count - 5)
    }
}
