import Foundation

/// Which row changes a binding wants.
public enum ChangeKindFilter: Sendable, Hashable {
    case all
    case only(RowChangeKind)

    public func accepts(_ kind: RowChangeKind) -> Bool {
        switch self {
        case .all: return true
        case .only(let wanted): return wanted == kind
        }
    }
}

/// The kind of a row change, as bindings name it (`INSERT`, `UPDATE`, `DELETE`): the decoder's own kind.
public typealias RowChangeKind = RowChange.Kind

/// One `postgres_changes` binding of a join, with the id echoed in the reply and sent in every matching change.
public struct PostgresChangesBinding: Sendable, Hashable {
    public var id: Int64
    /// The binding exactly as the client sent it: clients compare the echo field by field.
    public var original: JSONObject
    public var events: ChangeKindFilter
    public var schema: String
    public var table: String
    public var filterText: String?
    public var select: [String]?

    /// The reply's form of the binding: the client's own map with `id` added.
    public var echo: JSONValue {
        var object = original
        object["id"] = .int(id)
        return .object(object)
    }

    /// A stable, non-zero id below 2^31 that is the same for equal bindings (FNV-1a over the canonical JSON).
    static func stableID(_ object: JSONObject) -> Int64 {
        let canonical = JSONValue.object(JSONObject(object.entries.sorted { $0.key < $1.key })).serialized()
        var hash: UInt32 = 2_166_136_261
        for byte in canonical.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let id = Int64(hash & 0x7fff_ffff)
        return id == 0 ? 1 : id
    }
}

/// The parts of a `phx_join` payload Marquee acts on.
public struct JoinConfig: Sendable {
    public var bindings: [PostgresChangesBinding] = []
    /// Bindings that could not be parsed, with the reason (sent as a `system` error after the join reply).
    public var bindingErrors: [String] = []
    public var broadcastSelf = false
    public var broadcastAck = false
    public var presenceEnabled = false
    public var presenceKey: String = ""
    public var isPrivate = false
    /// `config.broadcast.replay`: stored messages newer than `since` (ms since 1970), at most `limit`.
    public var replay: (since: Int64, limit: Int)?
    /// Marquee's extension: send the current rows right after the join (`config.marquee.snapshot`).
    public var snapshot = false
    /// Marquee's extension: whether availability rows may be coalesced for this channel (`config.marquee.coalesce`,
    /// default true; false sends every version).
    public var coalesce = true
    public var accessToken: String?

    public init() {}

    /// The most `postgres_changes` bindings one channel may have.
    public static let maxBindings = 32

    /// Reads the join payload. Booleans may come as JSON booleans or as "true"/"false" strings, as Supabase allows.
    public static func parse(_ payload: JSONValue) throws(FrameError) -> JoinConfig {
        guard case .object(let root) = payload else { throw FrameError("the phx_join payload must be an object") }
        var config = JoinConfig()
        // as Supabase: user_token first, then access_token; an `sb_` key means "the token given at connect"
        if let token = root["user_token"]?.stringValue, !token.isEmpty {
            config.accessToken = token
        } else if let token = root["access_token"]?.stringValue, !token.hasPrefix("sb_"), !token.isEmpty {
            config.accessToken = token
        }
        guard let configValue = root["config"], !configValue.isNull else { return config }
        guard case .object(let object) = configValue else { throw FrameError("config must be an object") }
        if let broadcast = object["broadcast"]?.objectValue {
            config.broadcastSelf = flexibleBool(broadcast["self"]) ?? false
            config.broadcastAck = flexibleBool(broadcast["ack"]) ?? false
            if let replay = broadcast["replay"]?.objectValue {
                guard let since = replay["since"]?.intValue else { throw FrameError("config.broadcast.replay needs 'since' (milliseconds)") }
                let limit = replay["limit"]?.intValue ?? 25
                config.replay = (since, Int(max(1, min(limit, 25))))
            }
        }
        if let presence = object["presence"]?.objectValue {
            config.presenceEnabled = flexibleBool(presence["enabled"]) ?? false
            config.presenceKey = presence["key"]?.stringValue ?? ""
        }
        config.isPrivate = flexibleBool(object["private"]) ?? false
        if let marquee = object["marquee"]?.objectValue {
            config.snapshot = flexibleBool(marquee["snapshot"]) ?? false
            config.coalesce = flexibleBool(marquee["coalesce"]) ?? true
        }
        if let changes = object["postgres_changes"], !changes.isNull {
            guard case .array(let items) = changes else { throw FrameError("config.postgres_changes must be an array") }
            guard items.count <= maxBindings else {
                throw FrameError("a channel may have at most \(maxBindings) postgres_changes bindings, not \(items.count); use several channels")
            }
            for item in items {
                guard case .object(let binding) = item else { throw FrameError("each postgres_changes binding must be an object") }
                do {
                    config.bindings.append(try parseBinding(binding))
                } catch {
                    config.bindingErrors.append(error.message)
                    // keep the echo in order even for a binding that will not deliver
                    config.bindings.append(
                        PostgresChangesBinding(
                            id: PostgresChangesBinding.stableID(binding), original: binding, events: .all, schema: "", table: "",
                            filterText: nil, select: nil))
                }
            }
        }
        return config
    }

    static func parseBinding(_ binding: JSONObject) throws(FrameError) -> PostgresChangesBinding {
        let eventText = binding["event"]?.stringValue ?? "*"
        let events: ChangeKindFilter
        switch eventText.uppercased() {
        case "INSERT": events = .only(.insert)
        case "UPDATE": events = .only(.update)
        case "DELETE": events = .only(.delete)
        default: events = .all
        }
        let schema = binding["schema"]?.stringValue
        let table = binding["table"]?.stringValue
        guard schema != nil || table != nil else {
            throw FrameError(
                "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: \(JSONValue.object(binding).serialized())"
            )
        }
        let filter = binding["filter"]?.stringValue
        var select: [String]?
        if let list = binding["select"]?.arrayValue {
            select = list.compactMap(\.stringValue)
        }
        return PostgresChangesBinding(
            id: PostgresChangesBinding.stableID(binding), original: binding, events: events, schema: schema ?? "public", table: table ?? "*",
            filterText: filter, select: select)
    }

    static func flexibleBool(_ value: JSONValue?) -> Bool? {
        switch value {
        case .bool(let b): return b
        case .string(let s):
            switch s.lowercased() {
            case "true": return true
            case "false": return false
            default: return nil
            }
        default: return nil
        }
    }
}
