import Foundation
import Logging
import MarqueeCore
import PostgresNIO

/// Reads current rows for the snapshot extension. The table name comes from the subscription policy (never from the
/// client as free text), and an `eq` condition narrows the read.
public struct PostgresSnapshotSource: SnapshotSource {
    let client: PostgresClient
    let logger: Logger
    let deadline: DatabaseDeadline
    let maxRows = 1000

    public init(client: PostgresClient, deadline: DatabaseDeadline = DatabaseDeadline(), logger: Logger) {
        self.client = client
        self.deadline = deadline
        self.logger = logger
    }

    public func currentRows(table: String, filter: ChangeFilter) async throws -> (columns: [RowChange.Column], rows: [JSONObject]) {
        try await deadline.run("reading the current rows of \(table)") { try await reading(table: table, filter: filter) }
    }

    private func reading(table: String, filter: ChangeFilter) async throws -> (columns: [RowChange.Column], rows: [JSONObject]) {
        let parts = table.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, parts.allSatisfy({ $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } }) else { return ([], []) }
        var columns: [RowChange.Column] = []
        let columnRows = try await client.query(
            """
            select a.attname::text, t.typname::text, a.atttypid::int8, coalesce(i.indisprimary, false)
              from pg_attribute a
              join pg_type t on t.oid = a.atttypid
              left join pg_index i on i.indrelid = a.attrelid and i.indisprimary and a.attnum = any(i.indkey)
             where a.attrelid = (\(parts[0]) || '.' || \(parts[1]))::regclass and a.attnum > 0 and not a.attisdropped
             order by a.attnum
            """, logger: logger)
        for try await (name, type, oid, isKey) in columnRows.decode((String, String, Int64, Bool).self) {
            columns.append(RowChange.Column(name: name, typeName: type, typeOID: UInt32(truncatingIfNeeded: oid), isKey: isKey))
        }
        var query: PostgresQuery = "select to_jsonb(t)::text from \(unescaped: parts[0]).\(unescaped: parts[1]) t"
        // narrow the read only on columns whose text form is canonical; the filter itself is applied to every row after
        let canonicalTypes: Set<String> = ["uuid", "text", "varchar", "int2", "int4", "int8", "bool"]
        if let key = filter.indexKey, columns.contains(where: { $0.name == key.column && canonicalTypes.contains($0.typeName) }) {
            query =
                "select to_jsonb(t)::text from \(unescaped: parts[0]).\(unescaped: parts[1]) t where t.\(unescaped: key.column)::text = \(key.value) limit \(maxRows)"
        } else {
            query = "select to_jsonb(t)::text from \(unescaped: parts[0]).\(unescaped: parts[1]) t limit \(maxRows)"
        }
        var rows: [JSONObject] = []
        for try await text in try await client.query(query, logger: logger).decode(String.self) {
            // exact numbers: a numeric's digits (and a json column's 1e400) reach clients as to_jsonb wrote them
            if case .object(let object) = try JSONValue.parse(exactNumbers: text) {
                // keep the table's column order
                rows.append(JSONObject(columns.compactMap { column in object[column.name].map { (key: column.name, value: $0) } }))
            }
        }
        return (columns, rows)
    }
}
