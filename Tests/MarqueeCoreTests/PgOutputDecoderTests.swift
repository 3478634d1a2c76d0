import Foundation
import Testing

@testable import MarqueeCore

// MARK: - Helpers

private func decodeAll(_ fixture: [RecordedPgOutputMessage]) throws -> [PgOutputMessage] {
    var decoder = PgOutputDecoder()
    return try fixture.map { try decoder.decode($0.bytes) }
}

/// Every event the assembler releases, and the fixture index of the message that released it.
private func assembleAll(_ fixture: [RecordedPgOutputMessage]) throws -> [(index: Int, events: [ChangeEvent])] {
    var assembler = ChangeAssembler()
    var released: [(index: Int, events: [ChangeEvent])] = []
    for (index, message) in fixture.enumerated() {
        let events = try assembler.consume(message.bytes)
        if !events.isEmpty { released.append((index, events)) }
    }
    return released
}

private func rows(_ events: [ChangeEvent]) -> [RowChange] {
    events.compactMap { if case .row(let row) = $0 { return row } else { return nil } }
}

private func json(_ object: JSONObject?) -> String? { object.map { JSONValue.object($0).serialized() } }

private func bytes(_ hex: String) -> [UInt8] { PgOutputFixtures.bytes(hex: hex) }

private let itemsRecord1 = #"""
    {"id":1,"big":9007199254740993,"small":-7,"title":"hello \"world\"\n","uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",\#
    "created_at":"2024-03-05T12:34:56.789123+00:00","flag":true,"price":1234.500,"doc":{"a": [1, 2, {"b": null}], "c": "d"},\#
    "js":{"x" : 1},"ratio":3.25,"r4":1.5,"name":"varchar val","tags":["a","b c",null],"nums":[1,2,3],\#
    "blob":"\\xdeadbeef","day":"2024-02-29","feeling":"happy","note":null}
    """#

// MARK: - Decoder on recorded bytes

@Suite("PgOutput decoder")
struct PgOutputDecoderTests {
    @Test func decodesBeginCommitAndTimestamps() throws {
        let messages = try decodeAll(PgOutputFixtures.session)
        #expect(messages.count == 40)
        guard case .begin(let begin) = messages[0], case .commit(let commit) = messages[4] else {
            Issue.record("expected Begin and Commit, got \(messages[0]) / \(messages[4])")
            return
        }
        #expect(begin.xid == 729)
        #expect(begin.finalLSN == PgLSN("0/1532760"))
        #expect(begin.commitTimestamp.microsecondsSincePostgresEpoch == 848_937_845_770_440)
        #expect(commit.flags == 0)
        #expect(commit.commitLSN == begin.finalLSN)
        #expect(commit.endLSN.description == "0/1532790")
        #expect(commit.endLSN == PgLSN(PgOutputFixtures.session[4].lsn))
        #expect(commit.commitTimestamp == begin.commitTimestamp)
        #expect(formatCommitTimestamp(commit.commitTimestamp) == "2026-11-25T16:04:05.770Z")
    }

    @Test func decodesRelationAndTypeMessages() throws {
        var decoder = PgOutputDecoder()
        let session = PgOutputFixtures.session
        guard case .type(let mood) = try decoder.decode(session[1].bytes),
            case .relation(let items) = try decoder.decode(session[2].bytes)
        else {
            Issue.record("expected Type then Relation")
            return
        }
        #expect(mood == .init(oid: 16385, namespace: "public", name: "mood"))
        #expect(items.id == 16391 && items.namespace == "public" && items.name == "items")
        #expect(items.replicaIdentity == .full)
        #expect(
            items.columns.map(\.name) == [
                "id", "big", "small", "title", "uid", "created_at", "flag", "price", "doc", "js", "ratio", "r4", "name", "tags",
                "nums", "blob", "day", "feeling", "note",
            ])
        #expect(items.columns.allSatisfy { $0.isKey }, "REPLICA IDENTITY FULL flags every column")
        #expect(items.columns[7] == .init(flags: 1, name: "price", typeOID: 1700, typeModifier: (12 << 16 | 3) + 4))
        #expect(items.columns[12] == .init(flags: 1, name: "name", typeOID: 1043, typeModifier: 24))
        #expect(
            items.columns.map { decoder.typeName(oid: $0.typeOID) } == [
                "int4", "int8", "int2", "text", "uuid", "timestamptz", "bool", "numeric", "jsonb", "json", "float8", "float4",
                "varchar", "_text", "_int4", "bytea", "date", "mood", "text",
            ])

        guard case .relation(let kinds) = try decoder.decode(session[6].bytes) else {
            Issue.record("expected Relation")
            return
        }
        #expect(kinds.id == 16398 && kinds.name == "kinds" && kinds.replicaIdentity == .default)
        #expect(kinds.columns.map(\.isKey) == [true, false, false])
        #expect(kinds.columns.map(\.typeOID) == [20, 25, 25])
        #expect(decoder.relation(id: 16398) == kinds)
    }

    @Test func decodesRowMessagesAndTupleKinds() throws {
        let messages = try decodeAll(PgOutputFixtures.session)
        #expect(messages[7] == .insert(.init(relationID: 16398, newTuple: [.text("10"), .text("first"), .null])))
        #expect(
            messages[13] == .update(.init(relationID: 16398, oldTupleKind: nil, oldTuple: nil, newTuple: [.text("10"), .text("renamed"), .null])))
        #expect(
            messages[16]
                == .update(
                    .init(
                        relationID: 16398, oldTupleKind: .key, oldTuple: [.text("10"), .null, .null],
                        newTuple: [.text("11"), .text("renamed"), .null])))
        #expect(
            messages[19]
                == .update(.init(relationID: 16398, oldTupleKind: nil, oldTuple: nil, newTuple: [.text("20"), .text("toasty2"), .unchangedToast])))
        #expect(messages[26] == .delete(.init(relationID: 16398, oldTupleKind: .key, oldTuple: [.text("11"), .null, .null])))
        guard case .update(let full) = messages[10], case .delete(let fullDelete) = messages[25] else {
            Issue.record("expected Update and Delete on items")
            return
        }
        #expect(full.oldTupleKind == .full && full.oldTuple?.count == 19 && full.newTuple.count == 19)
        #expect(full.oldTuple?[3] == .text("hello \"world\"\n") && full.newTuple[3] == .text("changed"))
        #expect(fullDelete.oldTupleKind == .full && fullDelete.oldTuple[7] == .text("NaN"))
        #expect(messages[32] == .truncate(.init(options: 0, relationIDs: [16398])))
        #expect(messages[38] == .truncate(.init(options: 3, relationIDs: [16391, 16398])))
    }

    @Test func decodesLogicalMessagesAndOrigin() throws {
        let messages = try decodeAll(PgOutputFixtures.session)
        guard case .message(let inTx) = messages[27], case .message(let nonTx) = messages[29] else {
            Issue.record("expected two logical messages")
            return
        }
        #expect(inTx.isTransactional && inTx.prefix == "marquee" && inTx.contentText == "in-tx message")
        #expect(inTx.lsn == PgLSN("0/15381E0"))
        #expect(!nonTx.isTransactional && nonTx.contentText == #"non-tx \x01"#)
        #expect(PgOutputFixtures.session[29].xid == 0)

        let origin = try decodeAll(PgOutputFixtures.originText)
        #expect(origin[1] == .origin(.init(commitLSN: PgLSN(0xABCD_EF01), name: "upstream1")))
        guard case .begin(let begin) = origin[0] else {
            Issue.record("expected Begin")
            return
        }
        #expect(formatCommitTimestamp(begin.commitTimestamp) == "2024-01-01T00:00:00.000Z")
    }

    @Test func decodesBinaryTuples() throws {
        let messages = try decodeAll(PgOutputFixtures.originBinary)
        #expect(
            messages[3]
                == .insert(
                    .init(relationID: 16398, newTuple: [.binary([0, 0, 0, 0, 0, 0, 0, 40]), .binary(Array("from origin".utf8)), .binary([0x6F])])))
    }
}

// MARK: - Assembler on recorded bytes

@Suite("PgOutput change assembler")
struct PgOutputChangeAssemblerTests {
    @Test func releasesWholeTransactionsAtCommitInOrder() throws {
        let released = try assembleAll(PgOutputFixtures.session)
        #expect(released.map(\.index) == [4, 8, 11, 14, 17, 20, 28, 29, 33, 39])
        #expect(released.map(\.events.count) == [1, 1, 1, 1, 1, 1, 6, 1, 1, 1])
        let messages = try decodeAll(PgOutputFixtures.session)
        for (index, events) in released where index != 29 {
            guard case .commit(let commit) = messages[index] else {
                Issue.record("events released by a non-Commit message \(index)")
                continue
            }
            for row in rows(events) {
                #expect(row.xid == PgOutputFixtures.session[index].xid)
                #expect(row.commitLSN == commit.commitLSN && row.commitTimestamp == commit.commitTimestamp)
            }
        }
    }

    @Test func insertProducesTypedRecord() throws {
        let released = try assembleAll(PgOutputFixtures.session)
        guard let row = rows(released[0].events).first else {
            Issue.record("no row")
            return
        }
        #expect(row.schema == "public" && row.table == "items" && row.kind == .insert && row.xid == 729)
        #expect(row.commitLSN == PgLSN("0/1532760"))
        #expect(row.commitTimestampText == "2026-11-25T16:04:05.770Z")
        #expect(row.columns.first == .init(name: "id", typeName: "int4", typeOID: 23, isKey: true))
        #expect(row.columns.map(\.typeName)[5...8] == ["timestamptz", "bool", "numeric", "jsonb"])
        #expect(json(row.record) == itemsRecord1)
        #expect(row.record?["big"] == .int(9_007_199_254_740_993))
        #expect(row.record?["price"] == .raw("1234.500"))
        #expect(row.oldRecord == nil && row.unchangedToastColumns.isEmpty)
    }

    @Test func updatesCarryOldRecordsPerReplicaIdentity() throws {
        let released = try assembleAll(PgOutputFixtures.session)
        let updates = released[2...5].flatMap { rows($0.events) }
        #expect(updates.map(\.kind) == [.update, .update, .update, .update])

        // REPLICA IDENTITY FULL: the whole old row; NaN/Infinity stay strings.
        #expect(json(updates[0].oldRecord) == itemsRecord1)
        #expect(updates[0].record?["title"] == "changed" && updates[0].record?["flag"] == .bool(false))
        #expect(updates[0].record?["price"] == .string("NaN") && updates[0].record?["doc"] == .null)
        #expect(updates[0].record?["ratio"] == .string("Infinity") && updates[0].record?["r4"] == .string("-Infinity"))

        // DEFAULT identity, key unchanged: Postgres sends no old tuple; the key comes from the new row.
        #expect(json(updates[1].record) == #"{"id":10,"label":"renamed","body":null}"#)
        #expect(json(updates[1].oldRecord) == #"{"id":10}"#)

        // DEFAULT identity, key changed: old key from the 'K' tuple.
        #expect(json(updates[2].record) == #"{"id":11,"label":"renamed","body":null}"#)
        #expect(json(updates[2].oldRecord) == #"{"id":10}"#)

        // Unchanged TOAST value: left out of the record and listed.
        #expect(json(updates[3].record) == #"{"id":20,"label":"toasty2"}"#)
        #expect(updates[3].unchangedToastColumns == ["body"])
        #expect(json(updates[3].oldRecord) == #"{"id":20}"#)
    }

    @Test func multiStatementTransaction() throws {
        let released = try assembleAll(PgOutputFixtures.session)
        let events = released[6].events
        let changes = rows(events)
        #expect(
            changes.map { "\($0.kind.rawValue) \($0.table)" } == [
                "INSERT kinds", "INSERT items", "UPDATE kinds", "DELETE items", "DELETE kinds",
            ])
        #expect(changes.allSatisfy { $0.xid == 736 && $0.commitLSN == PgLSN("0/15381E0") })
        #expect(json(changes[0].record) == #"{"id":30,"label":"tx-a","body":"body a"}"#)
        #expect(changes[1].record?["price"] == .raw("-12.250") && changes[1].record?["ratio"] == .raw("-0.5"))
        #expect(changes[1].record?["big"] == .null && changes[1].record?.count == 19)
        #expect(json(changes[2].oldRecord) == #"{"id":30}"#)
        #expect(changes[3].record == nil && changes[3].oldRecord?["title"] == "changed" && changes[3].oldRecord?.count == 19)
        #expect(changes[4].record == nil && json(changes[4].oldRecord) == #"{"id":11}"#)
        guard case .message(let message) = events.last else {
            Issue.record("expected the transactional message last")
            return
        }
        #expect(message.prefix == "marquee" && message.contentText == "in-tx message")
        // The non-transactional message is released on its own, immediately.
        guard case .message(let nonTx) = released[7].events.first else {
            Issue.record("expected the non-transactional message")
            return
        }
        #expect(!nonTx.isTransactional && released[7].index == 29)
    }

    @Test func truncates() throws {
        let released = try assembleAll(PgOutputFixtures.session)
        guard case .truncate(let one) = released[8].events.first, case .truncate(let two) = released[9].events.first else {
            Issue.record("expected two truncates")
            return
        }
        #expect(one.tables == [.init(schema: "public", table: "kinds")] && !one.cascade && !one.restartIdentity && one.xid == 737)
        #expect(two.tables.map(\.table) == ["items", "kinds"] && two.cascade && two.restartIdentity)
        #expect(two.commitLSN == PgLSN("0/153A628"))
    }

    @Test func originIsTrackedPerTransaction() throws {
        var assembler = ChangeAssembler()
        let fixture = PgOutputFixtures.originText
        for message in fixture[0...3] { #expect(try assembler.consume(message.bytes).isEmpty) }
        #expect(assembler.currentOrigin == "upstream1" && assembler.isInTransaction)
        let events = try assembler.consume(fixture[4].bytes)
        #expect(rows(events).first?.commitTimestampText == "2024-01-01T00:00:00.000Z")
        #expect(assembler.currentOrigin == nil && !assembler.isInTransaction)
    }

    /// Binary-mode values decode to the same JSON as Postgres' own text output of the same rows (enums excepted: their
    /// binary form is their text, which the converter cannot tell from other user-defined types' without the catalog).
    @Test(arguments: ["origin", "wide"])
    func binaryValuesMatchTextValues(fixture: String) throws {
        let (text, binary, skip) =
            fixture == "origin"
            ? (PgOutputFixtures.originText, PgOutputFixtures.originBinary, [])
            : (PgOutputFixtures.wideText, PgOutputFixtures.wideBinary, ["feeling"])
        let textRows = try assembleAll(text).flatMap { rows($0.events) }
        let binaryRows = try assembleAll(binary).flatMap { rows($0.events) }
        #expect(textRows.count == binaryRows.count && !textRows.isEmpty)
        for (t, b) in zip(textRows, binaryRows) {
            for entry in t.record ?? [:] where !skip.contains(entry.key) {
                #expect(b.record?[entry.key] == entry.value, "column \(entry.key)")
            }
        }
    }

    @Test func edgeValuesFromText() throws {
        let records = try assembleAll(PgOutputFixtures.wideText).flatMap { rows($0.events) }.compactMap(\.record)
        #expect(records.count == 2)
        let first = records[0]
        let second = records[1]
        #expect(first["big"] == .int(Int64.min) && first["small"] == .int(32767) && first["title"] == "ünïcødé ✓")
        #expect(first["created_at"] == "1999-12-31T23:59:59.5+00:00" && first["price"] == .raw("-0.050"))
        #expect(first["js"] == .raw("[1, 2]") && first["ratio"] == "NaN" && first["r4"] == .raw("0.1"))
        #expect(first["blob"] == #"\x"# && first["day"] == "0044-03-15 BC" && first["tags"] == .array([]))
        #expect(second["created_at"] == "2024-02-29T23:59:59.999999+00:00" && second["price"] == .raw("100000000.000"))
        #expect(second["ratio"] == .raw("-0." + String(repeating: "0", count: 299) + "1") && second["day"] == "infinity")
    }
}

// MARK: - Malformed input

@Suite("PgOutput malformed input")
struct PgOutputMalformedInputTests {
    private func expectError(_ code: PgOutputError.Code, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try body()
            Issue.record("expected \(code), nothing thrown", sourceLocation: sourceLocation)
        } catch let error as PgOutputError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected PgOutputError \(code), got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func emptyUnknownAndUnsupported() {
        var decoder = PgOutputDecoder()
        expectError(.truncatedMessage) { _ = try decoder.decode([]) }
        expectError(.unknownMessageType) { _ = try decoder.decode([UInt8(ascii: "Z"), 0, 0]) }
        expectError(.unsupportedMessageType) { _ = try decoder.decode(bytes("53000002d901")) }  // Stream Start
    }

    @Test func everyTruncatedRecordedMessageThrowsTruncated() throws {
        var primed = PgOutputDecoder()
        for message in PgOutputFixtures.session { _ = try primed.decode(message.bytes) }
        let all = PgOutputFixtures.session + PgOutputFixtures.originBinary + PgOutputFixtures.wideBinary
        for message in all {
            let full = message.bytes
            for length in 0..<full.count {
                var decoder = primed
                expectError(.truncatedMessage) { _ = try decoder.decode(Array(full.prefix(length))) }
            }
        }
    }

    @Test func trailingBytesAndBadTupleKind() {
        var decoder = PgOutputDecoder()
        expectError(.malformedMessage) { _ = try decoder.decode(PgOutputFixtures.session[4].bytes + [0]) }
        // Insert into kinds whose last column kind 'n' became 'x'.
        expectError(.malformedMessage) { _ = try decoder.decode(bytes("490000400e4e00037400000002313074000000056669727374") + [0x78]) }
        // Negative column length.
        expectError(.malformedMessage) { _ = try decoder.decode(bytes("490000400e4e000174ffffffff")) }
        // Insert without the 'N' marker.
        expectError(.malformedMessage) { _ = try decoder.decode(bytes("490000400e4b0000")) }
    }

    @Test func tupleColumnCountMismatch() throws {
        var decoder = PgOutputDecoder()
        _ = try decoder.decode(PgOutputFixtures.session[6].bytes)  // Relation kinds, 3 columns
        // The recorded Insert (10, 'first', NULL) with the last column dropped.
        expectError(.columnCountMismatch) { _ = try decoder.decode(bytes("490000400e4e00027400000002313074000000056669727374")) }

        var assembler = ChangeAssembler()
        _ = try assembler.consume(PgOutputFixtures.session[5].bytes)
        _ = try assembler.consume(PgOutputFixtures.session[6].bytes)
        expectError(.columnCountMismatch) { _ = try assembler.consume(.insert(.init(relationID: 16398, newTuple: [.null]))) }
    }

    @Test func assemblerRejectsOutOfOrderMessages() throws {
        let session = PgOutputFixtures.session
        var assembler = ChangeAssembler()
        expectError(.unexpectedMessage) { _ = try assembler.consume(session[4].bytes) }  // Commit
        _ = try assembler.consume(session[6].bytes)  // Relation outside a transaction is fine
        expectError(.unexpectedMessage) { _ = try assembler.consume(session[7].bytes) }  // Insert
        _ = try assembler.consume(session[5].bytes)
        expectError(.unexpectedMessage) { _ = try assembler.consume(session[5].bytes) }  // Begin twice
        expectError(.unknownRelation) { _ = try assembler.consume(.insert(.init(relationID: 1, newTuple: []))) }
        assembler.discardOpenTransaction()
        #expect(!assembler.isInTransaction)
        for message in session[5...7] { #expect(try assembler.consume(message.bytes).isEmpty) }
        #expect(rows(try assembler.consume(session[8].bytes)).map(\.kind) == [.insert])
    }

    @Test func transactionSizeLimit() throws {
        var assembler = ChangeAssembler(maxPendingEvents: 2)
        expectError(.transactionTooLarge) {
            for message in PgOutputFixtures.session[0...28] { _ = try assembler.consume(message.bytes) }
        }
    }

    @Test func randomCorruptionNeverTraps() {
        var state: UInt64 = 0x5EED
        func next() -> UInt64 {  // SplitMix64
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let corpus = (PgOutputFixtures.session + PgOutputFixtures.wideBinary).map(\.bytes)
        var failures = 0
        for _ in 0..<3000 {
            var assembler = ChangeAssembler()
            var message = corpus[Int(next() % UInt64(corpus.count))]
            for _ in 0..<(1 + next() % 4) where !message.isEmpty {
                message[Int(next() % UInt64(message.count))] = UInt8(truncatingIfNeeded: next())
            }
            do { _ = try assembler.consume(message) } catch { failures += 1 }
        }
        #expect(failures > 0)
    }
}

// MARK: - Values, LSNs and timestamps

@Suite("PgOutput values")
struct PgOutputValueTests {
    @Test(arguments: [
        ("42", PgTypeOID.int4, JSONValue.int(42)), ("-9223372036854775808", PgTypeOID.int8, .int(Int64.min)),
        ("99999999999999999999", PgTypeOID.int8, .string("99999999999999999999")), ("4000000000", PgTypeOID.oid, .string("4000000000")),
        ("1e+100", PgTypeOID.float8, .raw("1" + String(repeating: "0", count: 100))), ("-Infinity", PgTypeOID.float4, .string("-Infinity")),
        ("NaN", PgTypeOID.float8, .string("NaN")), ("0.5", PgTypeOID.numeric, .raw("0.5")), ("-10", PgTypeOID.numeric, .raw("-10")),
        ("Infinity", PgTypeOID.numeric, .string("Infinity")), ("01", PgTypeOID.numeric, .string("01")),
        ("1.", PgTypeOID.numeric, .string("1.")), ("t", PgTypeOID.bool, .bool(true)), ("f", PgTypeOID.bool, .bool(false)),
        (#"{"a":1}"#, PgTypeOID.jsonb, .raw(#"{"a":1}"#)),
        ("2024-01-01 00:00:00+00", PgTypeOID.timestamptz, .string("2024-01-01T00:00:00+00:00")),
        ("{1,2}", 1007, .array([.int(1), .int(2)])), ("x", 99999, .string("x")),
    ])
    func textConversion(text: String, oid: UInt32, expected: JSONValue) {
        #expect(PgValueConverter.json(text: text, typeOID: oid) == expected)
    }

    @Test func tupleValueConversion() {
        #expect(PgValueConverter.json(.null, typeOID: PgTypeOID.int4) == .null)
        #expect(PgValueConverter.json(.unchangedToast, typeOID: PgTypeOID.text) == nil)
        #expect(PgValueConverter.json(.binary([0, 0, 0, 0, 0xC0, 0, 0, 0]), typeOID: PgTypeOID.numeric) == .string("NaN"))
        #expect(PgValueConverter.json(.binary([1, 2, 3]), typeOID: PgTypeOID.int4) == .string(#"\x010203"#))
        #expect(PgBinaryValues.numericText([0, 2, 0, 0, 0, 0, 0, 3, 0x04, 0xD2, 0x13, 0x88]) == "1234.500")
    }

    @Test func typeNames() {
        #expect(PgTypeNames.name(oid: 3802) == "jsonb" && PgTypeNames.name(oid: 1009) == "_text")
        #expect(PgTypeNames.name(oid: 16385) == nil)
        #expect(PgOutputDecoder().typeName(oid: 16385) == "16385")
    }

    @Test func lsnParsingAndFormatting() {
        #expect(PgLSN("0/1532568")?.value == 0x153_2568)
        #expect(PgLSN("16/B374D848")?.value == 0x16_B374_D848)
        #expect(PgLSN(0x16_B374_D848).description == "16/B374D848")
        #expect(PgLSN(0).description == "0/0")
        for bad in ["", "1532568", "0/", "/1", "0/1/2", "G/1", "123456789/0"] { #expect(PgLSN(bad) == nil, "\(bad)") }
    }

    @Test func commitTimestampFormatting() {
        #expect(formatCommitTimestamp(PgTimestamp(microsecondsSincePostgresEpoch: 0)) == "2000-01-01T00:00:00.000Z")
        #expect(formatCommitTimestamp(PgTimestamp(microsecondsSincePostgresEpoch: -1)) == "1999-12-31T23:59:59.999Z")
        #expect(formatCommitTimestamp(PgTimestamp(unixMicroseconds: 1_709_251_199_999_999)) == "2024-02-29T23:59:59.999Z")
        #expect(formatCommitTimestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(formatCommitTimestamp(Date(timeIntervalSince1970: 1_709_641_696.7895)) == "2024-03-05T12:28:16.789Z")
        let timestamp = PgTimestamp(microsecondsSincePostgresEpoch: 848_937_845_770_440)
        #expect(timestamp.date.timeIntervalSince1970 == 1_795_622_645.77044)
        #expect(timestamp.unixMicroseconds == 1_795_622_645_770_440)
    }
}
