import Foundation
import MarqueeCore

/// Who is looking: the role and user of a verified token.
public struct Viewer: Sendable, Hashable {
    public var role: Role
    public var userID: String?

    public init(role: Role, userID: String?) {
        self.role = role
        self.userID = userID
    }

    public init(_ claims: AccessClaims) {
        self.init(role: claims.role, userID: claims.sub)
    }

    public static let anonymous = Viewer(role: .anon, userID: nil)
}

/// Which tables may be subscribed to and which of their columns each viewer sees.
///
/// Defaults: `events` and `event_tickets` are public; `tickets` shows only non-sensitive columns to everyone but the
/// reservation's owner (and the service role); every other table is refused.
public struct SubscriptionPolicy: Sendable {
    public struct TableRule: Sendable {
        /// Columns everyone sees; nil means all.
        public var publicColumns: Set<String>?
        /// A column naming the row's owner, who sees every column.
        public var ownerColumn: String?
    }

    public var tables: [String: TableRule]
    /// Known columns per table, to refuse filters on columns that do not exist.
    public var columns: [String: [String]]

    public static let standard = SubscriptionPolicy(
        tables: [
            "public.events": TableRule(publicColumns: nil, ownerColumn: nil),
            "public.event_tickets": TableRule(publicColumns: nil, ownerColumn: nil),
            "public.tickets": TableRule(
                publicColumns: ["id", "event_id", "event_ticket_id", "quantity", "status", "created_at"], ownerColumn: "user_id"),
        ],
        columns: [:])

    /// The tables a binding covers, or the reason it is refused.
    func tables(for binding: PostgresChangesBinding) -> Result<[String], BindingRefusal> {
        if binding.schema == "*" || binding.table == "*" {
            let matching = tables.keys.filter { key in binding.schema == "*" || key.hasPrefix(binding.schema + ".") }.sorted()
            if matching.isEmpty { return .failure(.notPublished(binding)) }
            return .success(matching)
        }
        let key = "\(binding.schema).\(binding.table)"
        guard tables[key] != nil else { return .failure(.notPublished(binding)) }
        return .success([key])
    }

    /// Whether `viewer` may filter on `column` of `table` with `condition` (sensitive columns may only be used to
    /// select one's own rows).
    func mayFilter(_ condition: ChangeFilter.Condition, table: String, viewer: Viewer) -> Bool {
        guard let rule = tables[table], let publicColumns = rule.publicColumns, viewer.role != .serviceRole else { return true }
        if publicColumns.contains(condition.column) { return true }
        return condition.column == rule.ownerColumn && condition.op == .eq && !condition.negated && viewer.userID != nil
            && condition.values == [viewer.userID!]
    }

    /// Whether `viewer` sees every column of this row.
    func seesEverything(table: String, record: JSONObject?, viewer: Viewer) -> Bool {
        guard let rule = tables[table], rule.publicColumns != nil else { return true }
        if viewer.role == .serviceRole { return true }
        guard let ownerColumn = rule.ownerColumn, let userID = viewer.userID, let record else { return false }
        return record[ownerColumn]?.stringValue == userID
    }

    func publicColumns(table: String) -> Set<String>? { tables[table]?.publicColumns }
}

/// Why a binding does not deliver; the text matches Supabase's where it has one.
enum BindingRefusal: Error, Sendable {
    case notPublished(PostgresChangesBinding)
    case badFilter(String)
    case forbiddenFilter(String)

    var message: String {
        switch self {
        case .notPublished(let binding):
            return
                "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [schema: \(binding.schema), table: \(binding.table), filters: \(binding.filterText ?? "[]")]"
        case .badFilter(let text): return text
        case .forbiddenFilter(let column):
            return "Unable to subscribe to changes with given parameters. Unauthorized: you may not filter on \(column)"
        }
    }
}
