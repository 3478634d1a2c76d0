import Foundation
import Logging
import MarqueeCore
import PostgresNIO

/// Private-topic access and stored broadcasts, for joins.
public protocol BroadcastStore: Sendable {
    /// What `viewer` may do on the private `topic` (decided by `realtime.can_join` and `realtime.can_send`).
    func rights(topic: String, viewer: Viewer) async throws -> TopicRights
    /// Whether `topic` may only be joined privately (`realtime.is_private_topic`).
    func isPrivateTopic(_ topic: String) async throws -> Bool
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

    public func rights(topic: String, viewer: Viewer) async throws -> TopicRights {
        try await deadline.run("deciding access to a topic") { try await deciding(topic: topic, viewer: viewer) }
    }

    public func isPrivateTopic(_ topic: String) async throws -> Bool {
        try await deadline.run("deciding whether a topic is private") {
            let rows = try await client.query("select realtime.is_private_topic(\(topic))", logger: logger)
            for try await isPrivate in rows.decode(Bool?.self) { return isPrivate ?? true }
            return true
        }
    }

    public func replay(topic: String, sinceMilliseconds: Int64, limit: Int) async throws -> [JSONObject] {
        try await deadline.run("reading stored messages of \(topic)") {
            try await reading(topic: topic, sinceMilliseconds: sinceMilliseconds, limit: limit)
        }
    }

    private func deciding(topic: String, viewer: Viewer) async throws -> TopicRights {
        var claims: JSONObject = ["role": .string(viewer.role.rawValue)]
        if let sub = viewer.userID { claims["sub"] = .string(sub) }
        let text = JSONValue.object(claims).serialized()
        let rows = try await client.query(
            """
            select coalesce(realtime.can_join(\(topic), \(text)::jsonb), false),
                   coalesce(realtime.can_send(\(topic), \(text)::jsonb, 'broadcast'), false),
                   coalesce(realtime.can_send(\(topic), \(text)::jsonb, 'presence'), false)
            """, logger: logger)
        for try await (join, broadcast, presence) in rows.decode((Bool, Bool, Bool).self) {
            return TopicRights(mayJoin: join, mayBroadcast: join && broadcast, mayTrackPresence: join && presence)
        }
        return .none
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
