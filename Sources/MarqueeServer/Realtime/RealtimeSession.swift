import Foundation
import MarqueeCore

/// The result of checking a token that came with a frame (done at the edge, since verification is asynchronous).
public enum TokenCheck: Sendable, Equatable {
    case valid(Viewer, expiresAt: Date?)
    case invalid(String)

    /// For logs: the role, or that the token was refused (never the token itself).
    public var summary: String {
        switch self {
        case .valid(let viewer, _): return viewer.role.rawValue
        case .invalid: return "refused"
        }
    }
}

/// Limits a session enforces.
public struct SessionLimits: Sendable {
    /// Channels joined at once on one socket.
    public var maxChannels = 100
    /// Joins per second on one socket (bursts of twice as many).
    public var joinsPerSecond = 10.0
    /// Frames per second a socket may send (bursts of twice as many).
    public var messagesPerSecond = 100.0
    public init() {}
}

/// The limits, by the names used in errors, metrics and logs.
public enum LimitName: String, Sendable, CaseIterable {
    case channels = "ChannelRateLimitReached"
    case joins = "ClientJoinRateLimitReached"
    case messages = "ClientMessageRateLimitReached"
    case connectionsPerIP = "ConnectionRateLimitReached"
    case connectionsPerUser = "UserConnectionRateLimitReached"
    /// The server holds as many sockets as its open-file limit allows.
    case connections = "ServerConnectionLimitReached"
    case broadcasts = "BroadcastRateLimitReached"
    case frameSize = "FrameTooLarge"
    case reservations = "ReservationRateLimitReached"
}

/// The Phoenix/Supabase channel protocol of one socket as a pure state machine: a frame (and the check of any token
/// it carried) goes in, actions come out. The gateway performs the actions.
public struct RealtimeSession: Sendable {
    public enum Action: Sendable {
        case send(PhoenixMessage)
        /// Index the channel's bindings and membership.
        case subscribe(topic: String, joinRef: String?, subscriptions: [Subscription], membership: Membership)
        case unsubscribe(topic: String)
        /// Relay a client's broadcast. The edge answers `request` with `ok` when `ack` is set, or with an error when the
        /// topic's broadcast rate is exceeded.
        case broadcast(topic: String, payload: JSONValue, request: PhoenixMessage, ack: Bool)
        /// A limit was hit (for metrics and the log); the error reply is among the actions.
        case limitHit(LimitName)
        case trackPresence(topic: String, key: String, payload: JSONObject)
        case untrackPresence(topic: String)
        /// Send the topic's `presence_state`.
        case sendPresenceState(topic: String, joinRef: String?)
        /// Send the current rows of these bindings (Marquee's snapshot extension).
        case snapshot(topic: String, joinRef: String?, subscriptions: [Subscription])
    }

    /// What a joined channel needs later (the parsed join config is not kept: a socket may hold it for hours).
    struct Channel: Sendable {
        var joinRef: String?
        var isPrivate: Bool
        var broadcastAck: Bool
        var presenceKey: String
        var viewer: Viewer
        var expiresAt: Date?
    }

    /// How a channel takes part in broadcasts.
    public struct Membership: Sendable, Equatable {
        public var receiveOwnBroadcasts: Bool
        /// Private channels receive private database broadcasts; public ones public broadcasts.
        public var isPrivate: Bool
        /// Replay stored messages newer than `since` (ms), at most `limit`, before live ones.
        public var replaySince: Int64?
        public var replayLimit: Int
        /// Whether the channel accepts coalescing (`config.marquee.coalesce`, default true): availability broadcasts
        /// of a ticket type at most once per coalescing window, the newest.
        public var coalesce = true
    }

    public let policy: SubscriptionPolicy
    public let limits: SessionLimits
    /// The check of the token given at connect (`apikey`); joins without a token of their own use it.
    public private(set) var connectToken: TokenCheck
    private(set) var channels: [String: Channel] = [:]
    let connectionID: Int
    private var joinBucket: TokenBucket
    private var messageBucket: TokenBucket

    public init(connectionID: Int, connectToken: TokenCheck, policy: SubscriptionPolicy, limits: SessionLimits = SessionLimits()) {
        self.connectionID = connectionID
        self.connectToken = connectToken
        self.policy = policy
        self.limits = limits
        self.joinBucket = TokenBucket(rate: limits.joinsPerSecond, burst: limits.joinsPerSecond * 2)
        self.messageBucket = TokenBucket(rate: limits.messagesPerSecond, burst: limits.messagesPerSecond * 2)
    }

    public var joinedTopics: [String] { Array(channels.keys) }

    /// The private topic whose access the edge must decide (with `realtime.can_join`) before calling `receive`, and the
    /// viewer to decide it for: a private join, or a token refresh on a private channel.
    public func privateTopicToCheck(_ message: PhoenixMessage, token: TokenCheck?) -> (topic: String, viewer: Viewer)? {
        let viewerCheck: TokenCheck
        switch message.event {
        case "phx_join":
            guard (try? JoinConfig.parse(message.payload))?.isPrivate == true else { return nil }
            viewerCheck = token ?? connectToken
        case "access_token":
            guard channels[message.topic]?.isPrivate == true, let token else { return nil }
            viewerCheck = token
        default:
            return nil
        }
        guard case .valid(let viewer, _) = viewerCheck, message.topic.hasPrefix("realtime:") else { return nil }
        return (String(message.topic.dropFirst("realtime:".count)), viewer)
    }

    /// The token a frame carries that the edge must check before calling `receive` (join and access_token only).
    public static func tokenToCheck(_ message: PhoenixMessage) -> String? {
        switch message.event {
        case "phx_join":
            return (try? JoinConfig.parse(message.payload))?.accessToken
        case "access_token":
            guard let token = message.payload["access_token"]?.stringValue, !token.hasPrefix("sb_") else { return nil }
            return token
        default:
            return nil
        }
    }

    public mutating func receive(_ message: PhoenixMessage, token: TokenCheck? = nil, topicAccess: Bool? = nil, now: Date = Date()) -> [Action] {
        let seconds = now.timeIntervalSinceReferenceDate
        guard messageBucket.take(now: seconds) else {
            return [
                .limitHit(.messages),
                reply(message, status: "error", response: .object(["reason": "ClientMessageRateLimitReached: Too many messages per second"])),
            ]
        }
        if message.event == "phx_join" && !joinBucket.take(now: seconds) {
            return [
                .limitHit(.joins),
                reply(message, status: "error", response: .object(["reason": "ClientJoinRateLimitReached: Too many joins per second"])),
            ]
        }
        if message.topic == "phoenix" {
            if message.event == "heartbeat" { return [reply(message, status: "ok", response: .object([:]))] }
            return [reply(message, status: "error", response: .object(["reason": "unknown event on topic phoenix"]))]
        }
        switch message.event {
        case "phx_join": return join(message, token: token, topicAccess: topicAccess)
        case "phx_leave":
            var actions: [Action] = [reply(message, status: "ok", response: .object([:]))]
            if let channel = channels.removeValue(forKey: message.topic) {
                actions.append(.unsubscribe(topic: message.topic))
                actions.append(close(topic: message.topic, joinRef: channel.joinRef))
            }
            return actions
        default:
            break
        }
        guard var channel = channels[message.topic] else {
            return [reply(message, status: "error", response: .object(["reason": "unmatched topic"]))]
        }
        switch message.event {
        case "access_token":
            guard let token else { return [] }
            switch token {
            case .valid(let viewer, let expiresAt):
                if channel.isPrivate && topicAccess != true {
                    channels[message.topic] = nil
                    let name = String(message.topic.dropFirst("realtime:".count))
                    return [
                        systemMessage(
                            topic: message.topic, joinRef: channel.joinRef, extension: "system", status: "error",
                            message: "Unauthorized: You do not have permissions to read from this Channel topic: \(name)"),
                        .unsubscribe(topic: message.topic), close(topic: message.topic, joinRef: channel.joinRef),
                    ]
                }
                channel.viewer = viewer
                channel.expiresAt = expiresAt
                channels[message.topic] = channel
                return []
            case .invalid(let reason):
                channels[message.topic] = nil
                return [
                    systemMessage(topic: message.topic, joinRef: channel.joinRef, extension: "system", status: "error", message: reason),
                    .unsubscribe(topic: message.topic), close(topic: message.topic, joinRef: channel.joinRef),
                ]
            }
        case "broadcast":
            guard case .object(let payload) = message.payload, payload["event"]?.stringValue != nil else {
                return [reply(message, status: "error", response: .object(["reason": "a broadcast needs {type, event, payload}"]))]
            }
            return [.broadcast(topic: message.topic, payload: message.payload, request: message, ack: channel.broadcastAck)]
        case "presence":
            let kind = message.payload["event"]?.stringValue ?? ""
            switch kind {
            case "track":
                let payload = message.payload["payload"] ?? .object([:])
                guard case .object(let meta) = payload else {
                    return [reply(message, status: "error", response: .object(["reason": "Presence track payload must be a map"]))]
                }
                let key: String = channel.presenceKey.isEmpty ? "conn-\(connectionID)" : channel.presenceKey
                return [.trackPresence(topic: message.topic, key: key, payload: meta), reply(message, status: "ok", response: .object([:]))]
            case "untrack":
                return [.untrackPresence(topic: message.topic), reply(message, status: "ok", response: .object([:]))]
            default:
                return [reply(message, status: "error", response: .object(["reason": "presence event must be track or untrack"]))]
            }
        default:
            return [reply(message, status: "error", response: .object(["reason": .string("unknown event '\(message.event)'")]))]
        }
    }

    /// Channels whose token has expired by `now`: each gets a `system` error and is closed.
    public mutating func expireTokens(now: Date) -> [Action] {
        var actions: [Action] = []
        for (topic, channel) in channels.sorted(by: { $0.key < $1.key }) {
            guard let expiresAt = channel.expiresAt, expiresAt <= now else { continue }
            channels[topic] = nil
            actions.append(
                systemMessage(
                    topic: topic, joinRef: channel.joinRef, extension: "system", status: "error",
                    message: "Token has expired \(Int(now.timeIntervalSince(expiresAt))) seconds ago"))
            actions.append(.unsubscribe(topic: topic))
            actions.append(close(topic: topic, joinRef: channel.joinRef))
        }
        return actions
    }

    /// The earliest token expiry among joined channels.
    public var nextExpiry: Date? { channels.values.compactMap(\.expiresAt).min() }

    // MARK: - Join

    private mutating func join(_ message: PhoenixMessage, token: TokenCheck?, topicAccess: Bool?) -> [Action] {
        guard message.topic.hasPrefix("realtime:") else {
            return [reply(message, status: "error", response: .object(["reason": "unmatched topic"]))]
        }
        let name = String(message.topic.dropFirst("realtime:".count))
        guard !name.isEmpty else {
            return [reply(message, status: "error", response: .object(["reason": "TopicNameRequired: You must provide a topic name"]))]
        }
        let config: JoinConfig
        do {
            config = try JoinConfig.parse(message.payload)
        } catch {
            return [reply(message, status: "error", response: .object(["reason": .string("InvalidJoinPayload: \(error.message)")]))]
        }
        let viewer: Viewer
        let expiresAt: Date?
        switch token ?? connectToken {
        case .valid(let tokenViewer, let expiry):
            viewer = tokenViewer
            expiresAt = expiry
        case .invalid(let reason):
            return [reply(message, status: "error", response: .object(["reason": .string(reason)]))]
        }
        var actions: [Action] = []
        if let previous = channels.removeValue(forKey: message.topic) {
            // a second join of the same topic replaces the first, as Phoenix does
            actions.append(.unsubscribe(topic: message.topic))
            actions.append(close(topic: message.topic, joinRef: previous.joinRef))
        }
        guard channels.count < limits.maxChannels else {
            return actions + [
                .limitHit(.channels), reply(message, status: "error", response: .object(["reason": "ChannelRateLimitReached: Too many channels"])),
            ]
        }
        if config.isPrivate && topicAccess != true {
            return actions + [
                reply(
                    message, status: "error",
                    response: .object(["reason": .string("Unauthorized: You do not have permissions to read from this Channel topic: \(name)")]))
            ]
        }

        var errors = config.bindingErrors
        var subscriptions: [Subscription] = []
        for binding in config.bindings where !binding.table.isEmpty {
            switch validate(binding, topic: message.topic, viewer: viewer) {
            case .success(let subs):
                subscriptions += subs.map { subscription in
                    var subscription = subscription
                    subscription.coalesce = config.coalesce
                    return subscription
                }
            case .failure(let refusal): errors.append(refusal.message)
            }
        }
        channels[message.topic] = Channel(
            joinRef: message.joinRef, isPrivate: config.isPrivate, broadcastAck: config.broadcastAck, presenceKey: config.presenceKey,
            viewer: viewer, expiresAt: expiresAt)
        actions.append(
            reply(message, status: "ok", response: .object(["postgres_changes": .array(config.bindings.map(\.echo))])))
        actions.append(
            .subscribe(
                topic: message.topic, joinRef: message.joinRef, subscriptions: subscriptions,
                membership: Membership(
                    receiveOwnBroadcasts: config.broadcastSelf, isPrivate: config.isPrivate,
                    replaySince: config.isPrivate ? config.replay?.since : nil, replayLimit: config.replay?.limit ?? 0,
                    coalesce: config.coalesce)))
        if !config.bindings.isEmpty {
            if errors.isEmpty {
                actions.append(
                    systemMessage(
                        topic: message.topic, joinRef: message.joinRef, extension: "postgres_changes", status: "ok",
                        message: "Subscribed to PostgreSQL"))
            } else {
                actions.append(
                    systemMessage(
                        topic: message.topic, joinRef: message.joinRef, extension: "postgres_changes", status: "error",
                        message: errors.joined(separator: "; ")))
            }
        }
        if config.presenceEnabled { actions.append(.sendPresenceState(topic: message.topic, joinRef: message.joinRef)) }
        if config.snapshot && !subscriptions.isEmpty {
            actions.append(.snapshot(topic: message.topic, joinRef: message.joinRef, subscriptions: subscriptions))
        }
        return actions
    }

    private func validate(_ binding: PostgresChangesBinding, topic: String, viewer: Viewer) -> Result<[Subscription], BindingRefusal> {
        let tables: [String]
        switch policy.tables(for: binding) {
        case .success(let found): tables = found
        case .failure(let refusal): return .failure(refusal)
        }
        let filter: ChangeFilter
        do {
            filter = try ChangeFilter.parse(binding.filterText)
        } catch {
            return .failure(.badFilter(error.message))
        }
        var subscriptions: [Subscription] = []
        for table in tables {
            if let known = policy.columns[table] {
                for column in filter.columns where !known.contains(column) {
                    return .failure(.badFilter("Unable to subscribe to changes with given parameters. invalid column for filter \(column)"))
                }
            }
            for condition in filter.conditions where !policy.mayFilter(condition, table: table, viewer: viewer) {
                return .failure(.forbiddenFilter(condition.column))
            }
            subscriptions.append(
                Subscription(
                    uid: 0, connection: connectionID, topic: topic, bindingID: binding.id, table: table, events: binding.events, filter: filter,
                    select: binding.select, viewer: viewer))
        }
        return .success(subscriptions)
    }

    // MARK: - Frames

    private func reply(_ message: PhoenixMessage, status: String, response: JSONValue) -> Action {
        .send(
            PhoenixMessage(
                joinRef: message.joinRef, ref: message.ref, topic: message.topic, event: "phx_reply",
                payload: .object(["status": .string(status), "response": response])))
    }

    private func close(topic: String, joinRef: String?) -> Action {
        .send(PhoenixMessage(joinRef: joinRef, ref: joinRef, topic: topic, event: "phx_close", payload: .object([:])))
    }

    private func systemMessage(topic: String, joinRef: String?, extension name: String, status: String, message: String) -> Action {
        .send(
            PhoenixMessage(
                joinRef: joinRef, ref: nil, topic: topic, event: "system",
                payload: .object([
                    "extension": .string(name), "status": .string(status), "message": .string(message),
                    "channel": .string(String(topic.dropFirst("realtime:".count))),
                ])))
    }
}
