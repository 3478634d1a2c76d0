/// Well-known built-in type OIDs mapped to their `pg_type.typname`, the names Supabase reports in a change's `columns`.
///
/// Checked against `pg_type` of PostgreSQL 15; built-in OIDs are fixed across versions. User-defined types (enums,
/// domains, extension types such as `citext`) have OIDs >= 10000 and are named by pgoutput's Type messages instead.
public enum PgTypeNames {
    /// The built-in type name for `oid`, or nil when the OID is not a well-known built-in.
    public static func name(oid: UInt32) -> String? { table[oid] }

    static let table: [UInt32: String] = [
        16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 22: "int2vector", 23: "int4",
        24: "regproc", 25: "text", 26: "oid", 27: "tid", 28: "xid", 29: "cid", 30: "oidvector", 114: "json", 142: "xml",
        143: "_xml", 199: "_json", 271: "_xid8", 600: "point", 601: "lseg", 602: "path", 603: "box", 604: "polygon",
        628: "line", 629: "_line", 650: "cidr", 651: "_cidr", 700: "float4", 701: "float8", 705: "unknown", 718: "circle",
        719: "_circle", 774: "macaddr8", 775: "_macaddr8", 790: "money", 791: "_money", 829: "macaddr", 869: "inet",
        1000: "_bool", 1001: "_bytea", 1002: "_char", 1003: "_name", 1005: "_int2", 1006: "_int2vector", 1007: "_int4",
        1008: "_regproc", 1009: "_text", 1010: "_tid", 1011: "_xid", 1012: "_cid", 1013: "_oidvector", 1014: "_bpchar",
        1015: "_varchar", 1016: "_int8", 1017: "_point", 1018: "_lseg", 1019: "_path", 1020: "_box", 1021: "_float4",
        1022: "_float8", 1027: "_polygon", 1028: "_oid", 1040: "_macaddr", 1041: "_inet", 1042: "bpchar",
        1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1115: "_timestamp", 1182: "_date", 1183: "_time",
        1184: "timestamptz", 1185: "_timestamptz", 1186: "interval", 1187: "_interval", 1231: "_numeric", 1266: "timetz",
        1270: "_timetz", 1560: "bit", 1561: "_bit", 1562: "varbit", 1563: "_varbit", 1700: "numeric", 1790: "refcursor",
        2201: "_refcursor", 2205: "regclass", 2206: "regtype", 2210: "_regclass", 2211: "_regtype", 2950: "uuid",
        2951: "_uuid", 3220: "pg_lsn", 3221: "_pg_lsn", 3614: "tsvector", 3615: "tsquery", 3643: "_tsvector",
        3645: "_tsquery", 3802: "jsonb", 3807: "_jsonb", 3904: "int4range", 3905: "_int4range", 3906: "numrange",
        3907: "_numrange", 3908: "tsrange", 3909: "_tsrange", 3910: "tstzrange", 3911: "_tstzrange", 3912: "daterange",
        3913: "_daterange", 3926: "int8range", 3927: "_int8range", 4072: "jsonpath", 4073: "_jsonpath",
        4089: "regnamespace", 4096: "regrole", 4451: "int4multirange", 4532: "nummultirange", 4533: "tsmultirange",
        4534: "tstzmultirange", 4535: "datemultirange", 4536: "int8multirange", 5069: "xid8", 6150: "_int4multirange",
        6151: "_nummultirange", 6152: "_tsmultirange", 6153: "_tstzmultirange", 6155: "_datemultirange",
        6157: "_int8multirange",
    ]
}

/// OIDs of the built-in types the value converter treats specially.
public enum PgTypeOID {
    public static let bool: UInt32 = 16
    public static let bytea: UInt32 = 17
    public static let char: UInt32 = 18
    public static let name: UInt32 = 19
    public static let int8: UInt32 = 20
    public static let int2: UInt32 = 21
    public static let int4: UInt32 = 23
    public static let text: UInt32 = 25
    public static let oid: UInt32 = 26
    public static let json: UInt32 = 114
    public static let float4: UInt32 = 700
    public static let float8: UInt32 = 701
    public static let bpchar: UInt32 = 1042
    public static let varchar: UInt32 = 1043
    public static let date: UInt32 = 1082
    public static let time: UInt32 = 1083
    public static let interval: UInt32 = 1186
    public static let timetz: UInt32 = 1266
    public static let timestamp: UInt32 = 1114
    public static let timestamptz: UInt32 = 1184
    public static let numeric: UInt32 = 1700
    public static let uuid: UInt32 = 2950
    public static let jsonb: UInt32 = 3802
}
