/// What the value converter needs to know about a column type to render it as `to_jsonb` does: which types are arrays
/// (and of what), which are domains (over what), and which are composite (with which fields).
///
/// The built-in types are known without asking the database. pgoutput's Type messages name a user-defined type but do
/// not describe it, so the server reads the rest from `pg_type` (see `PgTypeCatalog.query`) and hands it over; a type
/// the catalog does not describe is treated like an enum or a range, whose `to_jsonb` is its text as a JSON string.
public struct PgTypeCatalog: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// An array (`typelem`), whose text form separates elements with `delimiter` (`,` for all but `box`).
        case array(element: UInt32, delimiter: Character)
        /// A domain: values are rendered as its base type's.
        case domain(base: UInt32)
        /// A composite (row) type: `to_jsonb` gives an object of its fields, in order.
        case composite([Field])
        /// `int2vector` and `oidvector`: elements separated by spaces, `to_jsonb` gives an array.
        case vector(element: UInt32)
        /// Enums, ranges, base types of extensions (`citext`, ...): `to_jsonb` gives the text as a string.
        case text
    }

    public struct Field: Sendable, Hashable {
        public var name: String
        public var typeOID: UInt32

        public init(name: String, typeOID: UInt32) {
            self.name = name
            self.typeOID = typeOID
        }
    }

    /// User-defined types by OID; built-in ones come from `builtIn`.
    public private(set) var userTypes: [UInt32: Kind] = [:]
    /// The domain names of table columns declared with a domain, by table OID and column name: pgoutput describes such
    /// a column by its base type, while `columns` should name the type as `pg_attribute` does.
    public private(set) var domainColumns: [UInt32: [String: String]] = [:]

    public init(userTypes: [UInt32: Kind] = [:]) { self.userTypes = userTypes }

    /// The catalog of the built-in types only.
    public static let builtIn = PgTypeCatalog()

    public func kind(of oid: UInt32) -> Kind? { Self.builtInKinds[oid] ?? userTypes[oid] }

    /// Whether the catalog describes `oid` (built-in, or read from `pg_type`).
    public func knows(_ oid: UInt32) -> Bool { oid < Self.firstUserOID || userTypes[oid] != nil }

    public mutating func add(_ oid: UInt32, _ kind: Kind) { userTypes[oid] = kind }

    /// OIDs below this are assigned at initdb; user-defined types start here (`FirstNormalObjectId`).
    public static let firstUserOID: UInt32 = 16384

    /// One row per user-defined type and, for composites, per field (in order): `oid, kind ('a' array, 'd' domain,
    /// 'c' composite, 't' any other), related type (element or base, else 0), text (an array's delimiter), field name,
    /// field type`; and one row per table column declared with a domain: `table oid, 'r', 0, the domain's name, the
    /// column's name, the domain`. Feed the rows, in order, to `add(row:)`.
    public static let query = """
        select t.oid::int8, 'a', t.typelem::int8, t.typdelim::text, '', 0::int8
          from pg_type t where t.oid >= 16384 and t.typelem <> 0 and t.typlen = -1 and t.typtype <> 'd'
           and t.typsubscript = 'array_subscript_handler'::regproc
        union all
        select t.oid::int8, 'd', t.typbasetype::int8, '', '', 0::int8 from pg_type t where t.oid >= 16384 and t.typtype = 'd'
        union all
        select t.oid::int8, 't', 0::int8, '', '', 0::int8 from pg_type t
         where t.oid >= 16384 and t.typtype in ('b', 'e', 'r', 'm', 'p') and not (t.typelem <> 0 and t.typlen = -1)
        union all
        select * from (
          select t.oid::int8, 'c', 0::int8, '', a.attname::text, a.atttypid::int8
            from pg_type t join pg_attribute a on a.attrelid = t.typrelid
           where t.oid >= 16384 and t.typtype = 'c' and a.attnum > 0 and not a.attisdropped
           order by t.oid, a.attnum) fields
        union all
        select a.attrelid::int8, 'r', 0::int8, t.typname::text, a.attname::text, a.atttypid::int8
          from pg_attribute a join pg_type t on t.oid = a.atttypid join pg_class c on c.oid = a.attrelid
         where t.typtype = 'd' and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
        """

    /// Adds one row of `query`'s result.
    public mutating func add(row oid: Int64, kind: String, related: Int64, text: String, fieldName: String, fieldType: Int64) {
        let oid = UInt32(truncatingIfNeeded: oid)
        switch kind {
        case "a": userTypes[oid] = .array(element: UInt32(truncatingIfNeeded: related), delimiter: text.first ?? ",")
        case "r": domainColumns[oid, default: [:]][fieldName] = text
        case "d": userTypes[oid] = .domain(base: UInt32(truncatingIfNeeded: related))
        case "t": userTypes[oid] = .text
        case "c":
            var fields: [Field] = []
            if case .composite(let known) = userTypes[oid] { fields = known }
            fields.append(Field(name: fieldName, typeOID: UInt32(truncatingIfNeeded: fieldType)))
            userTypes[oid] = .composite(fields)
        default: break
        }
    }

    /// Built-in arrays from their `_name`s in `PgTypeNames` (`box` arrays use `;`), and the two vector types.
    static let builtInKinds: [UInt32: Kind] = {
        var byName: [String: UInt32] = [:]
        for (oid, name) in PgTypeNames.table { byName[name] = oid }
        var kinds: [UInt32: Kind] = [:]
        for (oid, name) in PgTypeNames.table where name.hasPrefix("_") {
            guard let element = byName[String(name.dropFirst())] else { continue }
            kinds[oid] = .array(element: element, delimiter: element == 603 ? ";" : ",")
        }
        kinds[22] = .vector(element: PgTypeOID.int2)
        kinds[30] = .vector(element: PgTypeOID.oid)
        return kinds
    }()
}
