import Foundation
import Logging
import MarqueeCore
import PostgresNIO

/// Private-topic access and stored broadcasts, for joins.
public protocol BroadcastStore: Sendable {
    /// Whether `viewer` may join the private `topic` (decided by `realtime.can_join`).
    func canJoin(topic: String, viewer: Viewer) async throws -> Bool
    /// Stored private messages of `topic` newer than `sinceMilliseconds`, oldest first, at most `limit`.
    func replay(topic: String, sinceMilliseconds: Int64, limit: Int) async throws -> [JSONObject]
}

public struct PostgresBroadcastStore: BroadcastStore {
    let client: PostgresClient
    let logger: Logger
    let deadline: DatabaseDeadline

    public init(client: PostgresClient, deadline: DatabaseDeadline = DatabaseDeadline(), logger: Logger) {
        self.client = client
        self.deadline = deadline
        self.logger = logger
    }

    public func canJoin(topic: String, viewer: Viewer) async throws -> Bool {
        try await deadline.run("deciding access to \(topic)") { try await deciding(topic: topic, viewer: viewer) }
    }

    public func replay(topic: String, sinceMilliseconds: Int64, limit: Int) async throws -> [JSONObject] {
        try await deadline.run("reading stored messages of \(topic)") {
            try await reading(topic: topic, sinceMilliseconds: sinceMilliseconds, limit: limit)
        }
    }

    private func deciding(topic: String, viewer: Viewer) async throws -> Bool {
        var claims: JSONObject = ["role": .string(viewer.role.rawValue)]
        if let sub = viewer.userID { claims["sub"] = .string(sub) }
        let rows = try await client.query(
            "select realtime.can_join(\(topic), \(JSONValue.object(claims).serialized())::jsonb)", logger: logger)
        for try await allowed in rows.decode(Bool?.self) { return allowed ?? false }
        return false
    }

    private func reading(topic: String, sinceMilliseconds: Int64, limit: Int) async throws -> [JSONObject] {
        let rows = try await client.query(
            """
            select id::text, topic, event, coalesce(payload, '{}'::jsonb)::text, private
              from realtime.messages
             where topic = \(topic) and private and extension = 'broadcast'
               and inserted_at > to_timestamp(\(Double(sinceMilliseconds) / 1000))
             order by inserted_at, id
             limit \(limit)
            """, logger: logger)
        var messages: [JSONObject] = []
        for try await (id, topic, event, payload, isPrivate) in rows.decode((String, String, String?, String, Bool).self) {
            messages.append([
                "id": .string(id), "topic": .string(topic), "event": event.map(JSONValue.string) ?? .null, "payload": .raw(payload),
                "private": .bool(isPrivate),
            ])
        }
        return messages
    }
}
