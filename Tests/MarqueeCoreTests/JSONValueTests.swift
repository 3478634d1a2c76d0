import Foundation
import Testing

@testable import MarqueeCore

/// The same value with every object's keys sorted, to compare content regardless of key order.
func sortingKeys(_ value: JSONValue) -> JSONValue {
    switch value {
    case .object(let object):
        return .object(JSONObject(object.entries.sorted { $0.key < $1.key }.map { (key: $0.key, value: sortingKeys($0.value)) }))
    case .array(let items): return .array(items.map(sortingKeys))
    default: return value
    }
}

@Suite struct JSONValueSerializationTests {
    @Test(arguments: [
        ("plain", #""plain""#),
        ("say \"hi\"", #""say \"hi\"""#),
        (#"back\slash"#, #""back\\slash""#),
        ("a/b", #""a/b""#),
        ("line\nnext\rret\ttab", #""line\nnext\rret\ttab""#),
        ("\u{08}\u{0C}", #""\b\f""#),
        ("\u{0}\u{1}\u{1F}", #""\u0000\u0001\u001f""#),
        ("\u{7F}", "\"\u{7F}\""),
        ("é ü 中文 😀", #""é ü 中文 😀""#),
        ("😀\"\n", #""😀\"\n""#),
        ("", #""""#),
    ])
    func stringEscapes(text: String, json: String) throws {
        #expect(JSONValue.string(text).serialized() == json)
        #expect(try JSONValue.parse(json) == .string(text))
    }

    @Test func keysAreEscapedToo() {
        let object: JSONValue = .object(["a\"b": 1, "c\\d\n": "x"])
        #expect(object.serialized() == #"{"a\"b":1,"c\\d\n":"x"}"#)
    }

    @Test func scalarsAndContainers() {
        #expect(JSONValue.null.serialized() == "null")
        #expect(JSONValue.bool(true).serialized() == "true")
        #expect(JSONValue.int(-42).serialized() == "-42")
        #expect(JSONValue.int(Int64.max).serialized() == "9223372036854775807")
        #expect(JSONValue.double(1.5).serialized() == "1.5")
        #expect(JSONValue.double(2).serialized() == "2")
        #expect(JSONValue.double(.nan).serialized() == "null")
        #expect(JSONValue.double(.infinity).serialized() == "null")
        #expect(JSONValue.raw("123.4500").serialized() == "123.4500")
        #expect(JSONValue.array([1, "a", nil, .array([])]).serialized() == #"[1,"a",null,[]]"#)
        #expect(JSONValue.object([:]).serialized() == "{}")
    }

    @Test func objectsKeepInsertionOrder() {
        var object: JSONObject = ["z": 1, "a": 2]
        object["m"] = 3
        object["z"] = 4
        #expect(JSONValue.object(object).serialized() == #"{"z":4,"a":2,"m":3}"#)
        object["a"] = nil
        #expect(JSONValue.object(object).serialized() == #"{"z":4,"m":3}"#)
    }
}

@Suite struct JSONValueParsingTests {
    @Test func scalarsParseToTheirKind() throws {
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse("true") == .bool(true))
        #expect(try JSONValue.parse("false") == .bool(false))
        #expect(try JSONValue.parse("0") == .int(0))
        #expect(try JSONValue.parse("1") == .int(1))
        #expect(try JSONValue.parse("-17") == .int(-17))
        #expect(try JSONValue.parse("1.25") == .double(1.25))
        #expect(try JSONValue.parse(#""1""#) == .string("1"))
        #expect(try JSONValue.parse(#""\u00e9\ud83d\ude00""#) == .string("é😀"))
    }

    @Test func parseKeepsTheKeyOrderOfTheText() throws {
        let parsed = try JSONValue.parse(#"{"zeta":1,"alpha":2,"mid":{"y":1,"b":2,"x":3}}"#)
        #expect(parsed.objectValue?.keys == ["zeta", "alpha", "mid"])
        #expect(parsed["mid"]?.objectValue?.keys == ["y", "b", "x"])
        #expect(parsed.serialized() == #"{"zeta":1,"alpha":2,"mid":{"y":1,"b":2,"x":3}}"#)
    }

    @Test func roundTrip() throws {
        let value: JSONValue = .object([
            "ids": .array([30_636_876, 1]),
            "data": .object([
                "schema": "public", "type": "UPDATE", "errors": nil, "ok": true, "price": .double(12.5),
                "text": "quote \" backslash \\ newline \n tab \t nul \u{0} é 😀",
                "nested": .array([.object(["k": .array([])]), .object([:])]),
            ]),
        ])
        let text = value.serialized()
        let parsed = try JSONValue.parse(text)
        // key order is checked by parseKeepsTheKeyOrderOfTheText; here only the content
        #expect(sortingKeys(parsed) == sortingKeys(value))
        #expect(sortingKeys(parsed).serialized() == sortingKeys(value).serialized())
        // Foundation agrees that the text is JSON with the same content
        let foundation = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let data = try #require(foundation?["data"] as? [String: Any])
        #expect(data["text"] as? String == "quote \" backslash \\ newline \n tab \t nul \u{0} é 😀")
    }

    @Test(arguments: ["", "{", "[1,2", "{\"a\" 1}", "tru", "'single'", "{\"a\":1}}"])
    func invalidTextThrows(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func accessors() throws {
        let value = try JSONValue.parse(#"{"s":"x","b":true,"i":3,"d":4.0,"a":[1],"o":{}}"#)
        #expect(value["s"]?.stringValue == "x")
        #expect(value["b"]?.boolValue == true)
        #expect(value["i"]?.intValue == 3)
        #expect(value["d"]?.intValue == 4)
        #expect(value["a"]?.arrayValue == [1])
        #expect(value["o"]?.objectValue == JSONObject())
        #expect(value["missing"] == nil)
        #expect(JSONValue.string("x")["s"] == nil)
        #expect(JSONValue.null.isNull)
        #expect(JSONValue.raw("7").intValue == 7)
    }
}
