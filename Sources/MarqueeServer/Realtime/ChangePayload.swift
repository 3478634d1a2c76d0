import Foundation
import MarqueeCore

/// The `postgres_changes` payload Supabase clients expect (see docs/realtime-protocol.md §5).
enum ChangePayload {
    static func build(change: RowChange, kind: RowChangeKind, ids: [Int64], visibleColumns: Set<String>?, select: [String]?) -> JSONValue {
        func keep(_ name: String) -> Bool {
            if let visibleColumns, !visibleColumns.contains(name) { return false }
            // the primary key (`id` in every published table) always comes along; pgoutput marks every column as a key
            // under REPLICA IDENTITY FULL, so its key flags cannot tell
            if let select, !select.contains(name), name != "id" { return false }
            return true
        }
        func filtered(_ record: JSONObject?) -> JSONValue {
            guard let record else { return .object([:]) }
            return .object(JSONObject(record.entries.filter { keep($0.key) }))
        }
        var data: JSONObject = [
            "schema": .string(change.schema),
            "table": .string(change.table),
            "commit_timestamp": .string(change.commitTimestampText),
            "type": .string(kind.rawValue),
            "columns": .array(change.columns.filter { keep($0.name) }.map { .object(["name": .string($0.name), "type": .string($0.typeName)]) }),
        ]
        if kind != .delete { data["record"] = filtered(change.record) }
        if kind != .insert { data["old_record"] = filtered(change.oldRecord) }
        data["errors"] = .null
        return .object(["ids": .array(ids.map { .int($0) }), "data": .object(data)])
    }
}
