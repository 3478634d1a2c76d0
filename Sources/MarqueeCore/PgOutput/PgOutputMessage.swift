/// One decoded `pgoutput` message (logical replication protocol, version 1).
///
/// See https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
public enum PgOutputMessage: Sendable, Hashable {
    case begin(Begin)
    case commit(Commit)
    case origin(Origin)
    case relation(Relation)
    case type(TypeInfo)
    case insert(Insert)
    case update(Update)
    case delete(Delete)
    case truncate(Truncate)
    case message(LogicalMessage)
}

extension PgOutputMessage {
    /// 'B': a transaction starts. `finalLSN` is the LSN of its commit record.
    public struct Begin: Sendable, Hashable {
        public var finalLSN: PgLSN
        public var commitTimestamp: PgTimestamp
        public var xid: UInt32

        public init(finalLSN: PgLSN, commitTimestamp: PgTimestamp, xid: UInt32) {
            self.finalLSN = finalLSN
            self.commitTimestamp = commitTimestamp
            self.xid = xid
        }
    }

    /// 'C': the transaction begun by the last `Begin` committed.
    public struct Commit: Sendable, Hashable {
        public var flags: UInt8
        public var commitLSN: PgLSN
        public var endLSN: PgLSN
        public var commitTimestamp: PgTimestamp

        public init(flags: UInt8, commitLSN: PgLSN, endLSN: PgLSN, commitTimestamp: PgTimestamp) {
            self.flags = flags
            self.commitLSN = commitLSN
            self.endLSN = endLSN
            self.commitTimestamp = commitTimestamp
        }
    }

    /// 'O': the current transaction was replayed from another node (replication origin).
    public struct Origin: Sendable, Hashable {
        public var commitLSN: PgLSN
        public var name: String

        public init(commitLSN: PgLSN, name: String) {
            self.commitLSN = commitLSN
            self.name = name
        }
    }

    /// A table's `REPLICA IDENTITY` setting, which decides what old-row data Update and Delete carry.
    public enum ReplicaIdentity: Sendable, Hashable {
        /// 'd': primary key columns (old key sent only when it changes, or on delete).
        case `default`
        /// 'n': nothing.
        case nothing
        /// 'f': the whole old row.
        case full
        /// 'i': the columns of a chosen unique index.
        case index
        case other(UInt8)

        init(byte: UInt8) {
            switch byte {
            case UInt8(ascii: "d"): self = .default
            case UInt8(ascii: "n"): self = .nothing
            case UInt8(ascii: "f"): self = .full
            case UInt8(ascii: "i"): self = .index
            default: self = .other(byte)
            }
        }
    }

    /// 'R': describes a table before its first row in a decoding session (and again after DDL).
    public struct Relation: Sendable, Hashable {
        public var id: UInt32
        /// Schema name; Postgres sends an empty string for `pg_catalog`, which is reported here as `pg_catalog`.
        public var namespace: String
        public var name: String
        public var replicaIdentity: ReplicaIdentity
        public var columns: [Column]

        public init(id: UInt32, namespace: String, name: String, replicaIdentity: ReplicaIdentity, columns: [Column]) {
            self.id = id
            self.namespace = namespace
            self.name = name
            self.replicaIdentity = replicaIdentity
            self.columns = columns
        }

        public struct Column: Sendable, Hashable {
            public var flags: UInt8
            public var name: String
            public var typeOID: UInt32
            /// Type modifier (`atttypmod`), -1 when none; e.g. `varchar(20)` is 24.
            public var typeModifier: Int32

            public init(flags: UInt8, name: String, typeOID: UInt32, typeModifier: Int32) {
                self.flags = flags
                self.name = name
                self.typeOID = typeOID
                self.typeModifier = typeModifier
            }

            /// Whether the column is part of the replica identity (flag bit 1).
            public var isKey: Bool { flags & 1 != 0 }
        }
    }

    /// 'Y': names a non-built-in type (OID >= 10000: enums, domains, extension types) used by a following Relation.
    public struct TypeInfo: Sendable, Hashable {
        public var oid: UInt32
        public var namespace: String
        public var name: String

        public init(oid: UInt32, namespace: String, name: String) {
            self.oid = oid
            self.namespace = namespace
            self.name = name
        }
    }

    /// One column of a tuple ('TupleData').
    public enum TupleValue: Sendable, Hashable {
        /// 'n'
        case null
        /// 'u': a TOASTed value that did not change; the real value is not sent.
        case unchangedToast
        /// 't': the column's text output.
        case text(String)
        /// 'b': the column's binary send format (only with the `binary` option).
        case binary([UInt8])
    }

    /// Which old-row image an Update or Delete carries.
    public enum OldTupleKind: Sendable, Hashable {
        /// 'K': only the replica identity (key) columns are meaningful; the others are `.null`.
        case key
        /// 'O': the full old row (`REPLICA IDENTITY FULL`).
        case full
    }

    /// 'I'
    public struct Insert: Sendable, Hashable {
        public var relationID: UInt32
        public var newTuple: [TupleValue]

        public init(relationID: UInt32, newTuple: [TupleValue]) {
            self.relationID = relationID
            self.newTuple = newTuple
        }
    }

    /// 'U'
    public struct Update: Sendable, Hashable {
        public var relationID: UInt32
        public var oldTupleKind: OldTupleKind?
        public var oldTuple: [TupleValue]?
        public var newTuple: [TupleValue]

        public init(relationID: UInt32, oldTupleKind: OldTupleKind?, oldTuple: [TupleValue]?, newTuple: [TupleValue]) {
            self.relationID = relationID
            self.oldTupleKind = oldTupleKind
            self.oldTuple = oldTuple
            self.newTuple = newTuple
        }
    }

    /// 'D'
    public struct Delete: Sendable, Hashable {
        public var relationID: UInt32
        public var oldTupleKind: OldTupleKind
        public var oldTuple: [TupleValue]

        public init(relationID: UInt32, oldTupleKind: OldTupleKind, oldTuple: [TupleValue]) {
            self.relationID = relationID
            self.oldTupleKind = oldTupleKind
            self.oldTuple = oldTuple
        }
    }

    /// 'T'
    public struct Truncate: Sendable, Hashable {
        public var options: UInt8
        public var relationIDs: [UInt32]

        public init(options: UInt8, relationIDs: [UInt32]) {
            self.options = options
            self.relationIDs = relationIDs
        }

        public var cascade: Bool { options & 1 != 0 }
        public var restartIdentity: Bool { options & 2 != 0 }
    }

    /// 'M': a message written with `pg_logical_emit_message` (needs the `messages` option set to `true`).
    public struct LogicalMessage: Sendable, Hashable {
        /// Emitted with `transactional => true`: it arrives between Begin and Commit and belongs to that transaction.
        public var isTransactional: Bool
        public var lsn: PgLSN
        public var prefix: String
        public var content: [UInt8]

        public init(isTransactional: Bool, lsn: PgLSN, prefix: String, content: [UInt8]) {
            self.isTransactional = isTransactional
            self.lsn = lsn
            self.prefix = prefix
            self.content = content
        }

        /// The content as UTF-8 text, or nil if it is not valid UTF-8.
        public var contentText: String? { String(validating: content, as: UTF8.self) }
    }
}
