import Testing

@testable import MarqueeCore

/// The converter's output for Postgres' text forms, against what `to_jsonb` gives for the same values (read from
/// PostgreSQL 15 in a session with TimeZone UTC; the live oracle test, tests/conformance/test_value_forms.py, checks
/// every type against the database itself).
@Suite struct PgValueFormsTests {
    private func text(_ text: String, _ oid: UInt32, catalog: PgTypeCatalog = .builtIn) -> String {
        PgValueConverter.json(text: text, typeOID: oid, catalog: catalog).serialized()
    }

    @Test(
        arguments: [
            // timestamptz, printed in any zone, goes to UTC with a T and +00:00
            ("2026-12-03 19:52:55.304141+00", 1184, #""2026-12-03T19:52:55.304141+00:00""#),
            ("2026-12-04 01:22:55.304141+05:30", 1184, #""2026-12-03T19:52:55.304141+00:00""#),
            ("2026-03-28 22:00:00-03:30", 1184, #""2026-03-29T01:30:00+00:00""#),
            ("1900-01-01 00:19:32+00:19:32", 1184, #""1900-01-01T00:00:00+00:00""#),
            ("2000-01-01 00:30:00+01", 1184, #""1999-12-31T23:30:00+00:00""#),
            ("0044-03-15 12:00:00+00 BC", 1184, #""0044-03-15T12:00:00+00:00 BC""#),
            ("0001-01-01 00:30:00+01", 1184, #""0001-12-31T23:30:00+00:00 BC""#),
            ("294276-12-31 23:59:59.999999+00", 1184, #""294276-12-31T23:59:59.999999+00:00""#),
            ("infinity", 1184, #""infinity""#), ("-infinity", 1184, #""-infinity""#),
            // timestamp: a T, nothing else changes
            ("2026-12-03 19:52:55", 1114, #""2026-12-03T19:52:55""#), ("0044-03-15 10:00:00 BC", 1114, #""0044-03-15T10:00:00 BC""#),
            ("-infinity", 1114, #""-infinity""#),
            // text of another DateStyle is passed on as it is rather than misread
            ("03/12/2026 19:52:55.304141 UTC", 1184, #""03/12/2026 19:52:55.304141 UTC""#),
            // date, time, timetz, interval: their text
            ("4713-01-01 BC", 1082, #""4713-01-01 BC""#), ("12:00:01.5", 1083, #""12:00:01.5""#), ("12:00:01.5+05:30", 1266, #""12:00:01.5+05:30""#),
            ("1 year 2 mons -3 days +04:05:06.7", 1186, #""1 year 2 mons -3 days +04:05:06.7""#),
            // floats as numeric: no exponent, -0 is 0
            ("1.5e-07", 701, "0.00000015"), ("-0", 701, "0"), ("0.1", 700, "0.1"), ("3.4028235e+38", 700, "340282350000000000000000000000000000000"),
            ("123.456", 701, "123.456"), ("100", 701, "100"), ("-1.2e+20", 701, "-120000000000000000000"), ("Infinity", 701, #""Infinity""#),
            // numeric keeps its scale
            ("12.50", 1700, "12.50"), ("0.000", 1700, "0.000"), ("NaN", 1700, #""NaN""#),
            // integer-like types other than int2/4/8 are strings, as to_jsonb gives them
            ("4294967295", 26, #""4294967295""#), ("123", 28, #""123""#),
            ("\\x00ff", 17, #""\\x00ff""#), ("192.168.0.1/24", 869, #""192.168.0.1/24""#), ("$1,234.50", 790, #""$1,234.50""#),
            ("<a>x</a>", 142, #""<a>x</a>""#), ("[1,10)", 3904, #""[1,10)""#), ("(1,2)", 600, #""(1,2)""#),
        ] as [(String, UInt32, String)])
    func scalars(input: String, oid: UInt32, expected: String) {
        #expect(text(input, oid) == expected)
    }

    @Test(
        arguments: [
            ("{1,NULL,3}", 1007, "[1,null,3]"), ("{{1,2},{3,4}}", 1007, "[[1,2],[3,4]]"), ("{}", 1007, "[]"), ("[0:1]={1,2}", 1007, "[1,2]"),
            (#"{"a\"b","c\\d","NULL",NULL,""}"#, 1009, #"["a\"b","c\\d","NULL",null,""]"#),
            (#"{ spaced out ,x}"#, 1009, #"["spaced out","x"]"#),
            (#"{"2026-01-01 00:00:00+00"}"#, 1185, #"["2026-01-01T00:00:00+00:00"]"#),
            (#"{"\\x00"}"#, 1001, #"["\\x00"]"#), (#"{t,f}"#, 1000, "[true,false]"), (#"{1.50,NaN}"#, 1231, #"[1.50,"NaN"]"#),
            (#"{"{\"a\": 1}",NULL}"#, 3807, #"[{"a": 1},null]"#), (#"{NaN,1e+300}"#, 1022, #"["NaN",1\#(String(repeating: "0", count: 300))]"#),
            ("{(3,4),(1,2);(7,8),(5,6)}", 1020, #"["(3,4),(1,2)","(7,8),(5,6)"]"#), ("1 2", 22, "[1,2]"),
            ("{{{1}},{{2}}}", 1007, "[[[1]],[[2]]]"),
        ] as [(String, UInt32, String)])
    func arrays(input: String, oid: UInt32, expected: String) {
        #expect(text(input, oid) == expected)
    }

    @Test func brokenArrayTextIsSentAsText() {
        for broken in ["{1,2", "{\"a}", "1,2}", "{1}}", "{{1},2"] { #expect(text(broken, 1007) == JSONValue.string(broken).serialized()) }
    }

    @Test func userDefinedTypesFromTheCatalog() {
        var catalog = PgTypeCatalog()
        let mood: UInt32 = 16_400, moods: UInt32 = 16_399, count: UInt32 = 16_401, pair: UInt32 = 16_403, pairs: UInt32 = 16_402
        let tags: UInt32 = 16_404
        catalog.add(row: Int64(mood), kind: "t", related: 0, text: "", fieldName: "", fieldType: 0)
        catalog.add(row: Int64(moods), kind: "a", related: Int64(mood), text: ",", fieldName: "", fieldType: 0)
        catalog.add(row: Int64(count), kind: "d", related: 23, text: "", fieldName: "", fieldType: 0)
        catalog.add(row: Int64(tags), kind: "d", related: 1009, text: "", fieldName: "", fieldType: 0)
        catalog.add(row: Int64(pairs), kind: "a", related: Int64(pair), text: ",", fieldName: "", fieldType: 0)
        for (name, type) in [("a", 23), ("b", 25), ("c", 1184), ("d", 3802), ("e", 1231), ("m", Int(mood))] {
            catalog.add(row: Int64(pair), kind: "c", related: 0, text: "", fieldName: name, fieldType: Int64(type))
        }
        catalog.add(row: 16_500, kind: "r", related: 0, text: "value_count", fieldName: "c_count", fieldType: Int64(count))
        #expect(catalog.domainColumns[16_500] == ["c_count": "value_count"])
        #expect(catalog.knows(mood) && catalog.knows(pair) && !catalog.knows(16_500) && catalog.knows(23))
        #expect(text("happy", mood, catalog: catalog) == #""happy""#)
        #expect(text("{happy,NULL,\"with space\"}", moods, catalog: catalog) == #"["happy",null,"with space"]"#)
        #expect(text("5", count, catalog: catalog) == "5")
        #expect(text("{a,b}", tags, catalog: catalog) == #"["a","b"]"#)
        let pairText = #"(1,"x y","2026-01-01 00:00:00+00","{""k"": [1]}","{1.5,NULL}",happy)"#
        #expect(
            text(pairText, pair, catalog: catalog)
                == #"{"a":1,"b":"x y","c":"2026-01-01T00:00:00+00:00","d":{"k": [1]},"e":[1.5,null],"m":"happy"}"#)
        #expect(text(#"(,"",,,,)"#, pair, catalog: catalog) == #"{"a":null,"b":"","c":null,"d":null,"e":null,"m":null}"#)
        #expect(text(#"{"(1,,,,,)",NULL}"#, pairs, catalog: catalog) == #"[{"a":1,"b":null,"c":null,"d":null,"e":null,"m":null},null]"#)
        // without the catalog: the text, as for any type Marquee does not know
        #expect(text(pairText, pair) == JSONValue.string(pairText).serialized())
        #expect(text("5", count) == #""5""#)
    }

    @Test func theAssemblerListsTypesItsCatalogLacks() throws {
        var assembler = ChangeAssembler()
        _ = try assembler.consume(.type(.init(oid: 16_400, namespace: "public", name: "mood")))
        _ = try assembler.consume(.type(.init(oid: 16_401, namespace: "public", name: "gone")))
        #expect(assembler.typesMissingFromCatalog == [16_400, 16_401])
        var catalog = PgTypeCatalog()
        catalog.add(16_400, .text)
        assembler.learn(catalog)
        #expect(assembler.typesMissingFromCatalog == [16_401] && assembler.catalog.knows(16_400))
    }

    @Test func binaryFormsMatchTheTextForms() {
        func binary(_ bytes: [UInt8], _ oid: UInt32) -> String { PgBinaryValues.json(bytes, typeOID: oid).serialized() }
        // int4[] {1,NULL,3}: 1 dimension, has nulls, element int4, size 3, lower bound 1
        let intArray: [UInt8] =
            [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 23, 0, 0, 0, 3, 0, 0, 0, 1]
            + [0, 0, 0, 4, 0, 0, 0, 1] + [0xFF, 0xFF, 0xFF, 0xFF] + [0, 0, 0, 4, 0, 0, 0, 3]
        #expect(binary(intArray, 1007) == "[1,null,3]")
        #expect(binary([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23], 1007) == "[]")
        // interval 1 year 2 mons -3 days +04:05:06.7
        let micros = Int64(4 * 3600 + 5 * 60 + 6) * 1_000_000 + 700_000
        let interval =
            withUnsafeBytes(of: micros.bigEndian, Array.init) + withUnsafeBytes(of: Int32(-3).bigEndian, Array.init)
            + withUnsafeBytes(of: Int32(14).bigEndian, Array.init)
        #expect(binary(interval, 1186) == #""1 year 2 mons -3 days +04:05:06.7""#)
        #expect(PgBinaryValues.intervalText(months: 0, days: 0, micros: 0) == "00:00:00")
        #expect(PgBinaryValues.intervalText(months: 0, days: -1, micros: -1_000_000) == "-1 days -00:00:01")
        #expect(PgBinaryValues.intervalText(months: -1, days: 1, micros: 0) == "-1 mons +1 day")
        // timetz 12:00:01.5+05:30 (the zone is sent as seconds west of UTC)
        let timetz = withUnsafeBytes(of: Int64(43_201_500_000).bigEndian, Array.init) + withUnsafeBytes(of: Int32(-19_800).bigEndian, Array.init)
        #expect(binary(timetz, 1266) == #""12:00:01.5+05:30""#)
        // timestamptz 2000-01-01 00:00:00.5 UTC, timestamp, float8 1e100, oid
        #expect(binary(withUnsafeBytes(of: Int64(500_000).bigEndian, Array.init), 1184) == #""2000-01-01T00:00:00.5+00:00""#)
        #expect(binary(withUnsafeBytes(of: Int64(-1).bigEndian, Array.init), 1114) == #""1999-12-31T23:59:59.999999""#)
        #expect(binary(withUnsafeBytes(of: (1e100).bitPattern.bigEndian, Array.init), 701) == "1" + String(repeating: "0", count: 100))
        #expect(binary(withUnsafeBytes(of: Float(0.1).bitPattern.bigEndian, Array.init), 700) == "0.1")
        #expect(binary(withUnsafeBytes(of: (100.0).bitPattern.bigEndian, Array.init), 701) == "100")
        #expect(binary([0xFF, 0xFF, 0xFF, 0xFF], 26) == #""4294967295""#)
        // a truncated array is sent as hex, never trapped on
        #expect(binary([0, 0, 0, 1, 0, 0], 1007) == #""\\x000000010000""#)
    }

    @Test func floatTextToNumericText() {
        let cases: [(String, String?)] = [
            ("1e+100", "1" + String(repeating: "0", count: 100)), ("1.5e-07", "0.00000015"), ("-0", "0"), ("0", "0"), ("0.1", "0.1"),
            ("100.0", "100"), ("1e-45", "0." + String(repeating: "0", count: 44) + "1"), ("5e-324", "0." + String(repeating: "0", count: 323) + "5"),
            ("NaN", nil), ("Infinity", nil), ("-Infinity", nil), ("", nil), ("1e", nil), ("abc", nil),
        ]
        for (input, expected) in cases { #expect(PgNumberText.decimal(fromFloatText: input) == expected, "\(input)") }
    }
}
