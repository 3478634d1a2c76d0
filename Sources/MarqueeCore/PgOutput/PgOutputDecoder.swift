import Foundation

/// Decodes `pgoutput` (protocol version 1) messages one at a time.
///
/// Feed it every `data` value returned by `pg_logical_slot_{peek,get}_binary_changes(..., 'proto_version', '1', ...)` in
/// order. It remembers the Relation and Type messages it has seen so later row messages can be checked against the
/// table's column count. The decoder never traps on its input: anything short, malformed or unknown throws a
/// `PgOutputError`, after which the decoder can keep going with the next message.
public struct PgOutputDecoder: Sendable {
    /// Relations seen so far, by relation OID.
    public private(set) var relations: [UInt32: PgOutputMessage.Relation] = [:]
    /// Non-built-in types seen so far (Type messages), by type OID.
    public private(set) var types: [UInt32: PgOutputMessage.TypeInfo] = [:]

    public init() {}

    public func relation(id: UInt32) -> PgOutputMessage.Relation? { relations[id] }

    /// The Postgres type name for a column type: built-in names from well-known OIDs, names learnt from Type messages,
    /// otherwise the OID as text.
    public func typeName(oid: UInt32) -> String {
        PgTypeNames.name(oid: oid) ?? types[oid]?.name ?? String(oid)
    }

    /// Decodes one message and updates the relation/type caches.
    public mutating func decode(_ data: Data) throws(PgOutputError) -> PgOutputMessage {
        try decode(Array(data))
    }

    /// Decodes one message and updates the relation/type caches.
    public mutating func decode(_ bytes: [UInt8]) throws(PgOutputError) -> PgOutputMessage {
        var reader = PgOutputByteReader(bytes)
        let tag = try reader.readUInt8("message type")
        let message: PgOutputMessage
        switch tag {
        case UInt8(ascii: "B"):
            message = .begin(
                .init(
                    finalLSN: PgLSN(try reader.readUInt64("Begin final LSN")),
                    commitTimestamp: .init(microsecondsSincePostgresEpoch: try reader.readInt64("Begin commit timestamp")),
                    xid: try reader.readUInt32("Begin xid")))
        case UInt8(ascii: "C"):
            message = .commit(
                .init(
                    flags: try reader.readUInt8("Commit flags"),
                    commitLSN: PgLSN(try reader.readUInt64("Commit LSN")),
                    endLSN: PgLSN(try reader.readUInt64("Commit end LSN")),
                    commitTimestamp: .init(microsecondsSincePostgresEpoch: try reader.readInt64("Commit timestamp"))))
        case UInt8(ascii: "O"):
            message = .origin(
                .init(commitLSN: PgLSN(try reader.readUInt64("Origin LSN")), name: try reader.readCString("Origin name")))
        case UInt8(ascii: "R"):
            let relation = try Self.readRelation(&reader)
            relations[relation.id] = relation
            message = .relation(relation)
        case UInt8(ascii: "Y"):
            let type = PgOutputMessage.TypeInfo(
                oid: try reader.readUInt32("Type OID"),
                namespace: Self.namespace(try reader.readCString("Type namespace")),
                name: try reader.readCString("Type name"))
            types[type.oid] = type
            message = .type(type)
        case UInt8(ascii: "I"):
            let relationID = try reader.readUInt32("Insert relation id")
            let marker = try reader.readUInt8("Insert tuple marker")
            guard marker == UInt8(ascii: "N") else {
                throw .malformed("Insert expects new tuple marker 'N', got \(Self.show(marker))", offset: reader.offset - 1)
            }
            message = .insert(.init(relationID: relationID, newTuple: try readTuple(&reader, relationID: relationID)))
        case UInt8(ascii: "U"):
            let relationID = try reader.readUInt32("Update relation id")
            var marker = try reader.readUInt8("Update tuple marker")
            var oldKind: PgOutputMessage.OldTupleKind?
            var oldTuple: [PgOutputMessage.TupleValue]?
            if let kind = Self.oldTupleKind(marker) {
                oldKind = kind
                oldTuple = try readTuple(&reader, relationID: relationID)
                marker = try reader.readUInt8("Update new tuple marker")
            }
            guard marker == UInt8(ascii: "N") else {
                throw .malformed("Update expects tuple marker 'K', 'O' or 'N', got \(Self.show(marker))", offset: reader.offset - 1)
            }
            let newTuple = try readTuple(&reader, relationID: relationID)
            message = .update(.init(relationID: relationID, oldTupleKind: oldKind, oldTuple: oldTuple, newTuple: newTuple))
        case UInt8(ascii: "D"):
            let relationID = try reader.readUInt32("Delete relation id")
            let marker = try reader.readUInt8("Delete tuple marker")
            guard let kind = Self.oldTupleKind(marker) else {
                throw .malformed("Delete expects tuple marker 'K' or 'O', got \(Self.show(marker))", offset: reader.offset - 1)
            }
            message = .delete(.init(relationID: relationID, oldTupleKind: kind, oldTuple: try readTuple(&reader, relationID: relationID)))
        case UInt8(ascii: "T"):
            let count = try reader.readInt32("Truncate relation count")
            guard count >= 0 else { throw .malformed("negative Truncate relation count \(count)", offset: reader.offset - 4) }
            let options = try reader.readUInt8("Truncate options")
            guard Int(count) <= reader.remaining / 4 else { throw .truncated("Truncate relation ids", offset: reader.offset) }
            var ids: [UInt32] = []
            ids.reserveCapacity(Int(count))
            for _ in 0..<count { ids.append(try reader.readUInt32("Truncate relation id")) }
            message = .truncate(.init(options: options, relationIDs: ids))
        case UInt8(ascii: "M"):
            let flags = try reader.readUInt8("Message flags")
            let lsn = PgLSN(try reader.readUInt64("Message LSN"))
            let prefix = try reader.readCString("Message prefix")
            let length = try reader.readInt32("Message content length")
            let content = try reader.readBytes(Int(length), "Message content")
            message = .message(.init(isTransactional: flags & 1 != 0, lsn: lsn, prefix: prefix, content: content))
        case UInt8(ascii: "S"), UInt8(ascii: "E"), UInt8(ascii: "c"), UInt8(ascii: "A"), UInt8(ascii: "b"),
            UInt8(ascii: "P"), UInt8(ascii: "K"), UInt8(ascii: "r"), UInt8(ascii: "p"):
            throw PgOutputError(
                code: .unsupportedMessageType,
                message: "pgoutput message \(Self.show(tag)) (streaming / two-phase) is not part of protocol version 1",
                offset: 0)
        default:
            throw PgOutputError(code: .unknownMessageType, message: "unknown pgoutput message type \(Self.show(tag))", offset: 0)
        }
        guard reader.isAtEnd else {
            throw .malformed("\(reader.remaining) unexpected trailing byte(s) after \(Self.show(tag)) message", offset: reader.offset)
        }
        return message
    }

    // MARK: - Parts

    private static func readRelation(_ reader: inout PgOutputByteReader) throws(PgOutputError) -> PgOutputMessage.Relation {
        let id = try reader.readUInt32("Relation id")
        let namespace = namespace(try reader.readCString("Relation namespace"))
        let name = try reader.readCString("Relation name")
        let identity = PgOutputMessage.ReplicaIdentity(byte: try reader.readUInt8("Relation replica identity"))
        let count = try reader.readInt16("Relation column count")
        guard count >= 0 else { throw .malformed("negative Relation column count \(count)", offset: reader.offset - 2) }
        var columns: [PgOutputMessage.Relation.Column] = []
        columns.reserveCapacity(min(Int(count), reader.remaining / 10))
        for _ in 0..<count {
            columns.append(
                .init(
                    flags: try reader.readUInt8("Relation column flags"),
                    name: try reader.readCString("Relation column name"),
                    typeOID: try reader.readUInt32("Relation column type OID"),
                    typeModifier: try reader.readInt32("Relation column type modifier")))
        }
        return .init(id: id, namespace: namespace, name: name, replicaIdentity: identity, columns: columns)
    }

    private func readTuple(_ reader: inout PgOutputByteReader, relationID: UInt32) throws(PgOutputError) -> [PgOutputMessage.TupleValue] {
        let start = reader.offset
        let count = try reader.readInt16("tuple column count")
        guard count >= 0 else { throw .malformed("negative tuple column count \(count)", offset: start) }
        if let relation = relations[relationID], relation.columns.count != Int(count) {
            throw PgOutputError(
                code: .columnCountMismatch,
                message: "tuple has \(count) column(s) but relation \(relation.namespace).\(relation.name) (\(relationID)) "
                    + "has \(relation.columns.count)",
                offset: start)
        }
        var values: [PgOutputMessage.TupleValue] = []
        values.reserveCapacity(min(Int(count), reader.remaining))
        for index in 0..<Int(count) {
            let kind = try reader.readUInt8("tuple column \(index) kind")
            switch kind {
            case UInt8(ascii: "n"): values.append(.null)
            case UInt8(ascii: "u"): values.append(.unchangedToast)
            case UInt8(ascii: "t"):
                let length = try reader.readInt32("tuple column \(index) length")
                let bytes = try reader.readBytes(Int(length), "tuple column \(index) value")
                values.append(.text(String(decoding: bytes, as: UTF8.self)))
            case UInt8(ascii: "b"):
                let length = try reader.readInt32("tuple column \(index) length")
                values.append(.binary(try reader.readBytes(Int(length), "tuple column \(index) value")))
            default:
                throw .malformed("unknown tuple column kind \(Self.show(kind)) for column \(index)", offset: reader.offset - 1)
            }
        }
        return values
    }

    private static func oldTupleKind(_ marker: UInt8) -> PgOutputMessage.OldTupleKind? {
        switch marker {
        case UInt8(ascii: "K"): return .key
        case UInt8(ascii: "O"): return .full
        default: return nil
        }
    }

    /// pgoutput sends an empty namespace for `pg_catalog`.
    private static func namespace(_ text: String) -> String { text.isEmpty ? "pg_catalog" : text }

    static func show(_ byte: UInt8) -> String {
        (0x20..<0x7F).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))' (0x\(String(byte, radix: 16)))" : "0x\(String(byte, radix: 16))"
    }
}
