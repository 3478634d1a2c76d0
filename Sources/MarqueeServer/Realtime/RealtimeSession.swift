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
    /// Frames per second a socket may send (bursts of twice as many); frames that cannot be read count too.
    public var messagesPerSecond = 100.0
    /// The largest client broadcast frame, in bytes (`MARQUEE_MAX_BROADCAST_BYTES`).
    public var maxBroadcastBytes = 64 * 1024
    /// The largest presence frame, in bytes (`MARQUEE_MAX_PRESENCE_BYTES`).
    public var maxPresenceBytes = 4 * 1024
    /// The longest presence key, in bytes.
    public var maxPresenceKeyBytes = 256
    /// `like`, `ilike`, `match` and `imatch` conditions on one socket, in all its channels: each is matched against
    /// every change of its table, so they bound what one socket adds to every change's fan-out.
    public var maxPatternConditions = 10
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
    /// A broadcast or presence payload over its byte cap.
    case payloadSize = "PayloadTooLarge"
    /// A join whose pattern conditions would pass the socket's cap.
    case patternFilters = "TooManyPatternFilters"
    /// A socket that sent more bytes per second than its budget (reading it pauses).
    case inboundBytes = "InboundByteRateLimited"
    /// Frames queued for a socket over the outbox's byte or frame cap (the socket is closed to resync).
    case outbox = "SlowConsumer"
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
        /// The channel's token changed: its bindings see rows as `viewer` from now on (redaction, and filters the new
        /// viewer may not use are dropped).
        case updateViewer(topic: String, joinRef: String?, viewer: Viewer)
    }

    /// What a joined channel needs later (the parsed join config is not kept: a socket may hold it for hours).
    struct Channel: Sendable {
        var joinRef: String?
        var isPrivate: Bool
        var broadcastAck: Bool
        var presenceKey: String
        var viewer: Viewer
        var expiresAt: Date?
        var rights: TopicRights
        /// Its bindings' pattern conditions (see ``SessionLimits/maxPatternConditions``).
        var patternConditions: Int = 0
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

    /// What the edge must decide about a topic before calling `receive`: for a join, whether the topic may be joined
    /// this way and sent on (`realtime.can_join` / `can_send` for a private join, `realtime.is_private_topic` for a
    /// public one); for a token refresh on a private channel, the same for the new viewer.
    public struct TopicQuestion: Sendable, Equatable {
        /// The topic's name, without `realtime:`.
        public var topic: String
        public var viewer: Viewer
        public var isPrivate: Bool
    }

    /// The question the edge must answer (into ``TopicRights``) before calling `receive`, or nil when there is none.
    public func topicToCheck(_ message: PhoenixMessage, token: TokenCheck?) -> TopicQuestion? {
        guard message.topic.hasPrefix("realtime:") else { return nil }
        let name = String(message.topic.dropFirst("realtime:".count))
        let viewerCheck: TokenCheck
        let isPrivate: Bool
        switch message.event {
        case "phx_join":
            guard let config = try? JoinConfig.parse(message.payload) else { return nil }
            isPrivate = config.isPrivate
            viewerCheck = token ?? connectToken
        case "access_token":
            guard let channel = channels[message.topic], channel.isPrivate else { return nil }
            isPrivate = true
            viewerCheck = token ?? connectToken
        default:
            return nil
        }
        guard case .valid(let viewer, _) = viewerCheck, !name.isEmpty else { return nil }
        return TopicQuestion(topic: name, viewer: viewer, isPrivate: isPrivate)
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

    /// Counts a frame that could not be read against the message rate; false when the rate is exceeded (the frame is
    /// then dropped without an answer).
    public mutating func takeUnreadableFrame(now: Date = Date()) -> Bool {
        messageBucket.take(now: now.timeIntervalSinceReferenceDate)
    }

    /// Takes one frame. `rights` is the edge's answer to ``topicToCheck(_:token:)`` (nil when it asked nothing);
    /// `frameBytes` the frame's size, for the payload caps.
    public mutating func receive(
        _ message: PhoenixMessage, token: TokenCheck? = nil, rights: TopicRights? = nil, frameBytes: Int = 0, now: Date = Date()
    ) -> [Action] {
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
        case "phx_join": return join(message, token: token, rights: rights)
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
            // no token, or an `sb_` key: the channel falls back to the token given at connect
            switch token ?? connectToken {
            case .valid(let viewer, let expiresAt):
                let name = String(message.topic.dropFirst("realtime:".count))
                let granted = rights ?? (channel.isPrivate ? .none : .publicTopic(name))
                if channel.isPrivate && !granted.mayJoin {
                    channels[message.topic] = nil
                    return [
                        systemMessage(
                            topic: message.topic, joinRef: channel.joinRef, extension: "system", status: "error",
                            message: "Unauthorized: You do not have permissions to read from this Channel topic: \(name)"),
                        .unsubscribe(topic: message.topic), close(topic: message.topic, joinRef: channel.joinRef),
                    ]
                }
                channel.viewer = viewer
                channel.expiresAt = expiresAt
                channel.rights = granted
                channels[message.topic] = channel
                return [.updateViewer(topic: message.topic, joinRef: channel.joinRef, viewer: viewer)]
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
            guard channel.rights.mayBroadcast else {
                return [reply(message, status: "error", response: .object(["reason": .string(Self.sendRefusal(message.topic, "broadcasts"))]))]
            }
            guard frameBytes <= limits.maxBroadcastBytes else {
                return [
                    .limitHit(.payloadSize),
                    reply(
                        message, status: "error",
                        response: .object(["reason": .string("PayloadTooLarge: a broadcast may be at most \(limits.maxBroadcastBytes) bytes")])),
                ]
            }
            return [.broadcast(topic: message.topic, payload: message.payload, request: message, ack: channel.broadcastAck)]
        case "presence":
            let kind = message.payload["event"]?.stringValue ?? ""
            switch kind {
            case "track":
                guard channel.rights.mayTrackPresence else {
                    return [reply(message, status: "error", response: .object(["reason": .string(Self.sendRefusal(message.topic, "presence"))]))]
                }
                guard frameBytes <= limits.maxPresenceBytes else {
                    return [
                        .limitHit(.payloadSize),
                        reply(
                            message, status: "error",
                            response: .object([
                                "reason": .string("PayloadTooLarge: a presence message may be at most \(limits.maxPresenceBytes) bytes")
                            ])),
                    ]
                }
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

    /// Why a client may not send on a topic, worded for the developer.
    static func sendRefusal(_ topic: String, _ what: String) -> String {
        let name = String(topic.dropFirst("realtime:".count))
        if TopicRules.isOwn(name) {
            return "Unauthorized: \(what) on \(name) come only from the database; clients may not send them"
        }
        return "Unauthorized: You do not have permissions to send \(what) on this Channel topic: \(name)"
    }

    /// The earliest token expiry among joined channels.
    public var nextExpiry: Date? { channels.values.compactMap(\.expiresAt).min() }

    // MARK: - Join

    private mutating func join(_ message: PhoenixMessage, token: TokenCheck?, rights: TopicRights?) -> [Action] {
        guard message.topic.hasPrefix("realtime:") else {
            return [reply(message, status: "error", response: .object(["reason": "unmatched topic"]))]
        }
        let name = String(message.topic.dropFirst("realtime:".count))
        guard !name.isEmpty else {
            return [reply(message, status: "error", response: .object(["reason": "TopicNameRequired: You must provide a topic name"]))]
        }
        guard name.utf8.count <= TopicRules.maxTopicBytes else {
            return [
                reply(
                    message, status: "error",
                    response: .object(["reason": .string("TopicNameTooLong: a topic name may be at most \(TopicRules.maxTopicBytes) bytes")]))
            ]
        }
        let config: JoinConfig
        do {
            config = try JoinConfig.parse(message.payload)
        } catch {
            return [reply(message, status: "error", response: .object(["reason": .string("InvalidJoinPayload: \(error.message)")]))]
        }
        guard config.presenceKey.utf8.count <= limits.maxPresenceKeyBytes else {
            return [
                reply(
                    message, status: "error",
                    response: .object(["reason": .string("InvalidJoinPayload: a presence key may be at most \(limits.maxPresenceKeyBytes) bytes")]))
            ]
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
        // a private join needs the edge's decision; a public one is refused on a topic that is private
        let granted = rights ?? (config.isPrivate ? .none : .publicTopic(name))
        if config.isPrivate && !granted.mayJoin {
            return actions + [
                reply(
                    message, status: "error",
                    response: .object(["reason": .string("Unauthorized: You do not have permissions to read from this Channel topic: \(name)")]))
            ]
        }
        if !config.isPrivate && (!granted.mayJoin || TopicRules.isPrivateOnly(name)) {
            return actions + [
                reply(
                    message, status: "error",
                    response: .object([
                        "reason": .string("PrivateOnly: \(name) is a private topic; join it with config.private = true and a token that may read it")
                    ]))
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
        let patterns = subscriptions.reduce(0) { sum, subscription in
            sum + subscription.filter.conditions.filter { [.like, .ilike, .match, .imatch].contains($0.op) }.count
        }
        let patternsInUse = channels.values.reduce(0) { $0 + $1.patternConditions }
        guard patternsInUse + patterns <= limits.maxPatternConditions else {
            return actions + [
                .limitHit(.patternFilters),
                reply(
                    message, status: "error",
                    response: .object([
                        "reason": .string(
                            "TooManyPatternFilters: a socket may use at most \(limits.maxPatternConditions) like, ilike, match and imatch conditions in all its channels"
                        )
                    ])),
            ]
        }
        channels[message.topic] = Channel(
            joinRef: message.joinRef, isPrivate: config.isPrivate, broadcastAck: config.broadcastAck, presenceKey: config.presenceKey,
            viewer: viewer, expiresAt: expiresAt, rights: granted, patternConditions: patterns)
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
