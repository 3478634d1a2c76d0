import Foundation

/// One row changed by a committed transaction, shaped like a Supabase Realtime `postgres_changes` record.
public struct RowChange: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case insert = "INSERT"
        case update = "UPDATE"
        case delete = "DELETE"
    }

    public struct Column: Sendable, Hashable {
        public var name: String
        /// Postgres type name (`int4`, `timestamptz`, `_text`, an enum's name, ...), see `PgTypeNames`.
        public var typeName: String
        public var typeOID: UInt32
        /// Part of the table's replica identity (primary key by default).
        public var isKey: Bool

        public init(name: String, typeName: String, typeOID: UInt32, isKey: Bool) {
            self.name = name
            self.typeName = typeName
            self.typeOID = typeOID
            self.isKey = isKey
        }
    }

    public var schema: String
    public var table: String
    public var kind: Kind
    public var commitTimestamp: PgTimestamp
    public var commitLSN: PgLSN
    public var xid: UInt32
    /// All columns of the table, in table order.
    public var columns: [Column]
    /// The new row for inserts and updates (nil for deletes). Unchanged TOAST columns are left out, see
    /// `unchangedToastColumns`.
    public var record: JSONObject?
    /// The old row for updates and deletes, as far as the replica identity reveals it:
    /// - `REPLICA IDENTITY FULL`: the whole old row;
    /// - otherwise: the key columns only — from the old key Postgres sends on delete or when the key changed, else
    ///   (update without key change) from the new row;
    /// - nil for inserts, and when there are no key columns (`REPLICA IDENTITY NOTHING`).
    public var oldRecord: JSONObject?
    /// Columns whose TOASTed value did not change and therefore was not sent; they are absent from `record`.
    public var unchangedToastColumns: [String]

    public var commitTimestampText: String { formatCommitTimestamp(commitTimestamp) }

    public init(
        schema: String, table: String, kind: Kind, commitTimestamp: PgTimestamp, commitLSN: PgLSN, xid: UInt32, columns: [Column],
        record: JSONObject?, oldRecord: JSONObject?, unchangedToastColumns: [String] = []
    ) {
        self.schema = schema
        self.table = table
        self.kind = kind
        self.commitTimestamp = commitTimestamp
        self.commitLSN = commitLSN
        self.xid = xid
        self.columns = columns
        self.record = record
        self.oldRecord = oldRecord
        self.unchangedToastColumns = unchangedToastColumns
    }
}

/// A committed `TRUNCATE` of one or more tables.
public struct TruncateChange: Sendable, Hashable {
    public struct Table: Sendable, Hashable {
        public var schema: String
        public var table: String
    }

    public var tables: [Table]
    public var cascade: Bool
    public var restartIdentity: Bool
    public var commitTimestamp: PgTimestamp
    public var commitLSN: PgLSN
    public var xid: UInt32
}

/// What the assembler releases. Transactional events are released together, in order, when their transaction commits.
public enum ChangeEvent: Sendable, Hashable {
    case row(RowChange)
    case truncate(TruncateChange)
    /// A `pg_logical_emit_message` message. Transactional messages are released with their transaction's changes;
    /// non-transactional ones immediately.
    case message(PgOutputMessage.LogicalMessage)
}

/// Consumes `pgoutput` messages in stream order and releases whole committed transactions as row changes.
///
/// Pure state machine, no I/O. It keeps its own copy of the relation and type descriptions from the stream, so it can be
/// fed either raw message bytes (`consume(_ bytes:)`, which decodes with an internal `PgOutputDecoder`) or messages
/// decoded elsewhere (`consume(_ message:)`). Never mix the two on one instance.
public struct ChangeAssembler: Sendable {
    private var decoder = PgOutputDecoder()
    private var relations: [UInt32: PgOutputMessage.Relation] = [:]
    private var types: [UInt32: PgOutputMessage.TypeInfo] = [:]
    private var current: PgOutputMessage.Begin?
    private var pending: [ChangeEvent] = []
    /// Replication origin of the open transaction, if an Origin message named one.
    public private(set) var currentOrigin: String?
    /// Upper bound on events buffered for one transaction; exceeding it throws `transactionTooLarge`.
    public var maxPendingEvents: Int
    /// What is known about user-defined types (domains, composites, arrays of them), for rendering their values.
    public var catalog: PgTypeCatalog = .builtIn
    /// User-defined types named by the stream's Type messages that `catalog` does not describe: their values were
    /// rendered as text. A reader that can re-read the changes (peek) loads the catalog again and starts over.
    public private(set) var typesMissingFromCatalog: Set<UInt32> = []

    public init(maxPendingEvents: Int = Int.max) {
        self.maxPendingEvents = maxPendingEvents
    }

    /// Replaces the catalog, keeping everything else (an open transaction too): a reader that cannot read changes
    /// again (streaming) calls it as soon as a Type message names a type the catalog lacks, before the rows that use
    /// it. Types still missing stay listed in `typesMissingFromCatalog`.
    public mutating func learn(_ catalog: PgTypeCatalog) {
        self.catalog = catalog
        typesMissingFromCatalog = typesMissingFromCatalog.filter { !catalog.knows($0) }
    }

    /// Whether a transaction has begun and not yet committed.
    public var isInTransaction: Bool { current != nil }

    /// Drops a partly received transaction, e.g. after a read or decode error, before re-reading the slot from its
    /// confirmed position. Relation and type descriptions are kept (pgoutput re-sends them in every new session anyway).
    public mutating func discardOpenTransaction() {
        current = nil
        currentOrigin = nil
        pending = []
    }

    /// Decodes one `pgoutput` message and consumes it.
    public mutating func consume(_ bytes: [UInt8]) throws(PgOutputError) -> [ChangeEvent] {
        try consume(try decoder.decode(bytes))
    }

    /// Consumes one decoded message. Returns the events it releases: a whole transaction on Commit, a
    /// non-transactional logical message immediately, nothing otherwise.
    public mutating func consume(_ message: PgOutputMessage) throws(PgOutputError) -> [ChangeEvent] {
        switch message {
        case .begin(let begin):
            guard current == nil else {
                throw PgOutputError(code: .unexpectedMessage, message: "Begin of xid \(begin.xid) inside open transaction")
            }
            current = begin
            currentOrigin = nil
            pending = []
            return []
        case .commit(let commit):
            guard current != nil else { throw PgOutputError(code: .unexpectedMessage, message: "Commit without Begin") }
            var events = pending
            for index in events.indices {
                switch events[index] {
                case .row(var row):
                    row.commitLSN = commit.commitLSN
                    row.commitTimestamp = commit.commitTimestamp
                    events[index] = .row(row)
                case .truncate(var truncate):
                    truncate.commitLSN = commit.commitLSN
                    truncate.commitTimestamp = commit.commitTimestamp
                    events[index] = .truncate(truncate)
                case .message: break
                }
            }
            current = nil
            currentOrigin = nil
            pending = []
            return events
        case .origin(let origin):
            currentOrigin = origin.name
            return []
        case .relation(let relation):
            relations[relation.id] = relation
            return []
        case .type(let type):
            types[type.oid] = type
            if !catalog.knows(type.oid) { typesMissingFromCatalog.insert(type.oid) }
            return []
        case .message(let logical):
            guard logical.isTransactional else { return [.message(logical)] }
            try buffer(.message(logical), what: "transactional logical message")
            return []
        case .insert(let insert):
            let begin = try openTransaction("Insert")
            let relation = try relation(insert.relationID)
            var row = rowChange(.insert, relation: relation, begin: begin)
            let (record, toasted) = try record(insert.newTuple, relation: relation, keysOnly: false)
            row.record = record
            row.unchangedToastColumns = toasted
            try buffer(.row(row), what: "Insert")
            return []
        case .update(let update):
            let begin = try openTransaction("Update")
            let relation = try relation(update.relationID)
            var row = rowChange(.update, relation: relation, begin: begin)
            let (record, toasted) = try record(update.newTuple, relation: relation, keysOnly: false)
            row.record = record
            row.unchangedToastColumns = toasted
            if let old = update.oldTuple {
                row.oldRecord = try self.record(old, relation: relation, keysOnly: update.oldTupleKind != .full).0
            } else {
                row.oldRecord = try self.record(update.newTuple, relation: relation, keysOnly: true).0
            }
            if row.oldRecord?.isEmpty == true { row.oldRecord = nil }
            try buffer(.row(row), what: "Update")
            return []
        case .delete(let delete):
            let begin = try openTransaction("Delete")
            let relation = try relation(delete.relationID)
            var row = rowChange(.delete, relation: relation, begin: begin)
            row.oldRecord = try record(delete.oldTuple, relation: relation, keysOnly: delete.oldTupleKind != .full).0
            if row.oldRecord?.isEmpty == true { row.oldRecord = nil }
            try buffer(.row(row), what: "Delete")
            return []
        case .truncate(let truncate):
            let begin = try openTransaction("Truncate")
            var tables: [TruncateChange.Table] = []
            for id in truncate.relationIDs {
                let relation = try relation(id)
                tables.append(.init(schema: relation.namespace, table: relation.name))
            }
            let change = TruncateChange(
                tables: tables, cascade: truncate.cascade, restartIdentity: truncate.restartIdentity,
                commitTimestamp: begin.commitTimestamp, commitLSN: begin.finalLSN, xid: begin.xid)
            try buffer(.truncate(change), what: "Truncate")
            return []
        }
    }

    /// The Postgres type name for a column type OID, as reported in `RowChange.columns`.
    public func typeName(oid: UInt32) -> String {
        PgTypeNames.name(oid: oid) ?? types[oid]?.name ?? String(oid)
    }

    // MARK: - Helpers

    private func openTransaction(_ what: String) throws(PgOutputError) -> PgOutputMessage.Begin {
        guard let current else { throw PgOutputError(code: .unexpectedMessage, message: "\(what) outside a transaction") }
        return current
    }

    private func relation(_ id: UInt32) throws(PgOutputError) -> PgOutputMessage.Relation {
        guard let relation = relations[id] else {
            throw PgOutputError(code: .unknownRelation, message: "no Relation message seen for relation id \(id)")
        }
        return relation
    }

    private mutating func buffer(_ event: ChangeEvent, what: String) throws(PgOutputError) {
        guard pending.count < maxPendingEvents else {
            throw PgOutputError(
                code: .transactionTooLarge,
                message: "\(what) would exceed the limit of \(maxPendingEvents) buffered events in xid \(current?.xid ?? 0)")
        }
        pending.append(event)
    }

    /// A row change stamped with the Begin's commit LSN and time (Commit restamps it with the authoritative values).
    private func rowChange(
        _ kind: RowChange.Kind, relation: PgOutputMessage.Relation, begin: PgOutputMessage.Begin
    ) -> RowChange {
        RowChange(
            schema: relation.namespace, table: relation.name, kind: kind, commitTimestamp: begin.commitTimestamp,
            commitLSN: begin.finalLSN, xid: begin.xid,
            columns: relation.columns.map {
                let name = catalog.domainColumns[relation.id]?[$0.name] ?? typeName(oid: $0.typeOID)
                return .init(name: $0.name, typeName: name, typeOID: $0.typeOID, isKey: $0.isKey)
            },
            record: nil, oldRecord: nil, unchangedToastColumns: [])
    }

    /// Zips a tuple with its relation's columns into JSON, leaving out unchanged TOAST values (returned separately).
    private func record(
        _ tuple: [PgOutputMessage.TupleValue], relation: PgOutputMessage.Relation, keysOnly: Bool
    ) throws(PgOutputError) -> (JSONObject, [String]) {
        guard tuple.count == relation.columns.count else {
            throw PgOutputError(
                code: .columnCountMismatch,
                message: "tuple has \(tuple.count) column(s) but relation \(relation.namespace).\(relation.name) "
                    + "(\(relation.id)) has \(relation.columns.count)")
        }
        var entries: [(key: String, value: JSONValue)] = []
        entries.reserveCapacity(tuple.count)
        var toasted: [String] = []
        for (column, value) in zip(relation.columns, tuple) where !keysOnly || column.isKey {
            if let json = PgValueConverter.json(value, typeOID: column.typeOID, catalog: catalog) {
                entries.append((key: column.name, value: json))
            } else {
                toasted.append(column.name)
            }
        }
        return (JSONObject(entries), toasted)
    }
}
