import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MarqueeCore
import NIOCore
import Synchronization

/// Loads current rows for Marquee's snapshot extension.
public protocol SnapshotSource: Sendable {
    /// The current rows of `table` ("schema.table") that may match `filter`, with their column types.
    func currentRows(table: String, filter: ChangeFilter) async throws -> (columns: [RowChange.Column], rows: [JSONObject])
}

/// The realtime endpoint: what every socket's session shares (the hub, token checks, limits, the loop writers), and
/// the actions of a session performed against the hub. Each socket is served by a ``RealtimeSocketHandler``.
public final class RealtimeGateway: Sendable {
    public struct Configuration: Sendable {
        public var maxFrameBytes = 1 << 20
        /// Frames that may wait for one socket, and their bytes; past either the socket is closed with 1013 to resync.
        public var outboxCapacity = 4096
        public var outboxBytes = 8 << 20
        /// Bytes per second one socket may send (bursts up to the frame limit); past it reading pauses.
        public var inboundBytesPerSecond = 256.0 * 1024
        public var limits = SessionLimits()
        /// Realtime sockets open at once, in all (one past it is closed with 1013 and `ServerConnectionLimitReached`).
        public var maxConnections = Int.max
        public var maxConnectionsPerIP = 1000
        public var maxConnectionsPerUser = 20
        public init() {}
    }

    let hub: RealtimeHub
    let authority: TokenAuthority
    let snapshots: (any SnapshotSource)?
    let broadcasts: (any BroadcastStore)?
    let analytics: EventAnalytics?
    let configuration: Configuration
    let logger: Logger
    private let nextConnectionID = Atomic<Int>(0)
    let limitLog = LogThrottle(interval: 10)
    let errorLog = LogThrottle(interval: 10)
    /// Whether public topic names are private (`realtime.is_private_topic`), for a short while.
    let privacyCache = TopicPrivacyCache()
    /// Writes the sockets' frames from their event loops, one pass per loop.
    let loopWriters: LoopWriters

    public init(
        hub: RealtimeHub, authority: TokenAuthority, snapshots: (any SnapshotSource)?, broadcasts: (any BroadcastStore)? = nil,
        analytics: EventAnalytics? = nil, configuration: Configuration = Configuration(), logger: Logger
    ) {
        self.analytics = analytics
        self.hub = hub
        self.authority = authority
        self.snapshots = snapshots
        self.broadcasts = broadcasts
        self.configuration = configuration
        self.logger = logger
        self.loopWriters = LoopWriters(metrics: hub.metrics)
    }

    /// The paths Supabase clients use.
    public static let paths = ["/realtime/v1/websocket", "/socket/websocket"]

    /// Counts and logs (at most every 10 s per limit and client) a hit of a named limit.
    func recordLimit(_ limit: LimitName, client: String, logger: Logger) {
        hub.metrics.limitHit(limit.rawValue)
        if limitLog.shouldLog("\(limit.rawValue)|\(client)") {
            logger.warning("limit reached", metadata: ["limit": "\(limit.rawValue)", "client": "\(LogText.escape(client))"])
        }
    }

    /// The codes realtime errors are counted and logged under; any other reason counts as `other`, so a client's text
    /// never becomes a metric label.
    static let errorCodes: Set<String> = Set(LimitName.allCases.map(\.rawValue)).union([
        "InvalidJWTToken", "JwtSignatureError", "MalformedJWT", "Unauthorized", "DatabaseUnavailable", "InvalidJoinPayload",
        "TopicNameRequired", "TopicNameTooLong", "PrivateOnly", "unmatched topic",
    ])

    /// The fixed code of an error reason: the part before ':' when it is a known code, else `other`.
    static func errorCode(_ reason: String) -> String {
        let code = String(reason.split(separator: ":", maxSplits: 1).first ?? Substring(reason))
        return errorCodes.contains(code) ? code : "other"
    }

    /// Counts an error answered to a client, and logs it at most every 10 s per code and client.
    func recordError(_ reason: String, topic: String, client: String, logger: Logger) {
        let code = Self.errorCode(reason)
        hub.metrics.error(code)
        if errorLog.shouldLog("\(code)|\(client)") {
            logger.info(
                "realtime error", metadata: ["topic": "\(LogText.escape(topic))", "reason": "\(code)", "client": "\(LogText.escape(client))"])
        }
    }

    /// A plain HTTP request on a realtime path (a refused upgrade) is answered with what was wrong.
    func addRoutes(to router: Router<MarqueeRequestContext>) {
        for path in Self.paths {
            router.get(RouterPath(path)) { request, _ -> Response in
                guard PhoenixSerializer(vsn: request.uri.queryParameters.get("vsn")) != nil else {
                    throw APIError(.badRequest, "unsupported_vsn", "vsn must be 1.0.0 or 2.0.0")
                }
                throw APIError(
                    .init(code: 426, reasonPhrase: "Upgrade Required"), "websocket_required",
                    "this path takes a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13)")
            }
        }
    }

    /// The key every socket is counted under (against ``Configuration/maxConnections``).
    static let allConnections = "all"

    /// A new socket's number (in logs and in the hub).
    func makeConnectionID() -> Int { nextConnectionID.add(1, ordering: .relaxed).newValue }

    func check(_ token: String) async -> TokenCheck {
        do {
            let claims = try await authority.verify(token)
            return .valid(Viewer(claims), expiresAt: claims.exp?.value)
        } catch {
            switch error.code {
            case .expired: return .invalid("InvalidJWTToken: Token has expired (\(error.message))")
            case .notYetValid: return .invalid("InvalidJWTToken: Token is not valid yet (nbf)")
            case .badClaims: return .invalid("InvalidJWTToken: Fields `role` (anon, authenticated or service_role) is required in JWT")
            case .invalid where error.message.contains("signature"): return .invalid("JwtSignatureError: Failed to validate JWT signature")
            case .invalid: return .invalid("MalformedJWT: The token provided is not a valid JWT")
            case .missing: return .invalid("InvalidJWTToken: API key is missing")
            }
        }
    }

    /// Performs `actions` in order, waiting where one must (a replay or a snapshot read from the database).
    func perform(_ actions: [RealtimeSession.Action], connection: ConnectionHandle, client: String, logger: Logger) async {
        var rest = performNow(actions[...], connection: connection, client: client, logger: logger)
        while let next = rest.first {
            switch next {
            case .subscribe(let topic, _, _, let membership):
                // indexed by performNow: what is left is the replay
                if let since = membership.replaySince {
                    await replay(topic: topic, since: since, limit: membership.replayLimit, connection: connection, logger: logger)
                }
            case .snapshot(let topic, let joinRef, let subscriptions):
                await sendSnapshot(topic: topic, joinRef: joinRef, subscriptions: subscriptions, connection: connection, logger: logger)
            default:
                break
            }
            rest = performNow(rest.dropFirst(), connection: connection, client: client, logger: logger)
        }
    }

    /// Performs `actions` in order up to the first one that must wait (a channel's replay, after its bindings are indexed,
    /// or a snapshot), and returns that one with the rest; empty when all were done.
    func performNow(
        _ actions: ArraySlice<RealtimeSession.Action>, connection: ConnectionHandle, client: String, logger: Logger
    ) -> ArraySlice<RealtimeSession.Action> {
        for (index, action) in zip(actions.indices, actions) {
            switch action {
            case .send(let original):
                let message = hub.feedGate.admit(original, connection: connection)
                if message.event == "phx_reply", message.payload["status"]?.stringValue == "error",
                    let reason = message.payload["response"]?["reason"]?.stringValue
                {
                    recordError(reason, topic: message.topic, client: client, logger: logger)
                }
                connection.outbox.enqueue(.text(connection.serializer.encode(message)))
            case .subscribe(let topic, let joinRef, let subscriptions, let membership):
                hub.join(connectionID: connection.id, topic: topic, joinRef: joinRef, subscriptions: subscriptions, membership: membership)
                if let analytics, let event = EventAnalytics.eventID(topic: topic, subscriptions: subscriptions) { analytics.subscribed(event) }
                logger.info(
                    "realtime joined",
                    metadata: ["topic": "\(LogText.escape(topic))", "bindings": "\(subscriptions.count)", "private": "\(membership.isPrivate)"])
                if membership.replaySince != nil { return actions[index...] }
            case .unsubscribe(let topic):
                hub.leave(connectionID: connection.id, topic: topic)
                logger.info("realtime left", metadata: ["topic": "\(LogText.escape(topic))"])
            case .updateViewer(let topic, let joinRef, let viewer):
                let dropped = hub.updateViewer(connectionID: connection.id, topic: topic, viewer: viewer)
                if !dropped.isEmpty {
                    let name = String(topic.dropFirst("realtime:".count))
                    let system = PhoenixMessage(
                        joinRef: joinRef, topic: topic, event: "system",
                        payload: .object([
                            "extension": "postgres_changes", "status": "error",
                            "message": .string(
                                "Unauthorized: the new token may not use the filters of bindings \(dropped.map(String.init).joined(separator: ", ")); they were removed"
                            ),
                            "channel": .string(name),
                        ]))
                    connection.outbox.enqueue(.text(connection.serializer.encode(system)))
                }
            case .broadcast(let topic, let payload, let request, let ack):
                let reply: JSONValue
                if hub.broadcast(topic: topic, payload: payload, from: connection.id) {
                    guard ack else { continue }
                    reply = .object(["status": "ok", "response": .object([:])])
                } else {
                    recordLimit(.broadcasts, client: client, logger: logger)
                    reply = .object([
                        "status": "error",
                        "response": .object(["reason": "BroadcastRateLimitReached: Too many broadcast messages per second on this topic"]),
                    ])
                }
                let message = PhoenixMessage(joinRef: request.joinRef, ref: request.ref, topic: topic, event: "phx_reply", payload: reply)
                connection.outbox.enqueue(.text(connection.serializer.encode(message)))
            case .limitHit(let limit):
                recordLimit(limit, client: client, logger: logger)
            case .trackPresence(let topic, let key, let payload, let request):
                let reason: String?
                switch hub.trackPresence(topic: topic, key: key, connectionID: connection.id, payload: payload) {
                case .tracked: reason = nil
                case .rateLimited:
                    recordLimit(.presence, client: client, logger: logger)
                    reason = "PresenceRateLimitReached: Too many presence messages per second on this topic"
                case .full:
                    recordLimit(.presence, client: client, logger: logger)
                    reason = "PresenceRateLimitReached: this topic holds as much presence as it may; untrack elsewhere first"
                case .notJoined: reason = "unmatched topic"
                }
                let response: JSONValue =
                    reason.map { .object(["status": "error", "response": .object(["reason": .string($0)])]) }
                    ?? .object(["status": "ok", "response": .object([:])])
                let message = PhoenixMessage(joinRef: request.joinRef, ref: request.ref, topic: topic, event: "phx_reply", payload: response)
                connection.outbox.enqueue(.text(connection.serializer.encode(message)))
            case .untrackPresence(let topic):
                hub.untrackPresence(topic: topic, connectionID: connection.id)
            case .sendPresenceState(let topic, let joinRef):
                let message = PhoenixMessage(
                    joinRef: joinRef, topic: topic, event: "presence_state", payload: hub.presenceState(topic: topic, connectionID: connection.id))
                connection.outbox.enqueue(.text(connection.serializer.encode(message)))
            case .snapshot:
                if snapshots != nil { return actions[index...] }
            }
        }
        return []
    }

    /// The answer to what a viewer may do on a topic.
    enum TopicAccess: Equatable {
        case decided(TopicRights)
        /// The database could not decide in time (or failed); `reason` is the `phx_reply` error's reason.
        case unavailable(String)
    }

    /// Decides a join's or token refresh's rights: `realtime.can_join` / `can_send` for a private topic, and whether a
    /// public join names a private topic (`realtime.is_private_topic`, cached). A failing database never opens a topic.
    func access(_ question: RealtimeSession.TopicQuestion, logger: Logger) async -> TopicAccess {
        if !question.isPrivate {
            let rights = TopicRights.publicTopic(question.topic)
            guard rights.mayJoin, let broadcasts else { return .decided(rights) }
            if let known = privacyCache.isPrivate(question.topic) { return .decided(known ? .none : rights) }
            do {
                let isPrivate = try await broadcasts.isPrivateTopic(question.topic)
                privacyCache.remember(question.topic, isPrivate: isPrivate)
                return .decided(isPrivate ? .none : rights)
            } catch {
                // a public join stays possible while the database does not answer (an on-sale page must not go dark
                // with it): the last answer for this name, if any, else Marquee's own rule (`user:…` is private)
                logger.warning("topic privacy check failed; using the last known answer", metadata: ["error": "\(describeError(error))"])
                return .decided(privacyCache.isPrivate(question.topic, acceptingStale: true) == true ? .none : rights)
            }
        }
        guard let broadcasts else { return .decided(.none) }
        do {
            return .decided(try await broadcasts.rights(topic: question.topic, viewer: question.viewer))
        } catch {
            logger.warning("private topic check failed", metadata: ["error": "\(describeError(error))"])
            return .unavailable("\(Self.databaseUnavailable): the database could not decide access to this topic in time; join again shortly")
        }
    }

    /// The code of realtime errors caused by a database that does not answer (bounded by ``DatabaseDeadline``).
    static let databaseUnavailable = "DatabaseUnavailable"

    /// Answers `message` (a join) with a `phx_reply` error, without it reaching the session.
    func refuse(_ message: PhoenixMessage, reason: String, connection: ConnectionHandle, logger: Logger) {
        hub.metrics.error(Self.databaseUnavailable)
        logger.info("realtime error", metadata: ["topic": "\(LogText.escape(message.topic))", "reason": "\(Self.databaseUnavailable)"])
        let reply = PhoenixMessage(
            joinRef: message.joinRef, ref: message.ref, topic: message.topic, event: "phx_reply",
            payload: .object(["status": "error", "response": .object(["reason": .string(reason)])]))
        connection.outbox.enqueue(.text(connection.serializer.encode(reply)))
    }

    /// Sends stored messages newer than `since`, flagged `meta.replayed`, then the live ones that arrived meanwhile.
    private func replay(topic: String, since: Int64, limit: Int, connection: ConnectionHandle, logger: Logger) async {
        var replayed = Set<String>()
        if let broadcasts {
            do {
                let name = String(topic.dropFirst("realtime:".count))
                for record in try await broadcasts.replay(topic: name, sinceMilliseconds: since, limit: limit) {
                    if let id = record["id"]?.stringValue { replayed.insert(id) }
                    let message = RealtimeHub.databaseBroadcastMessage(topic: topic, record: record, replayed: true)
                    connection.outbox.enqueue(.text(connection.serializer.encode(message)))
                }
            } catch {
                logger.warning("replay failed", metadata: ["topic": "\(LogText.escape(topic))", "error": "\(describeError(error))"])
            }
        }
        hub.finishReplay(connectionID: connection.id, topic: topic, replayedIDs: replayed)
    }

    /// Sends the current rows as `postgres_changes` UPDATE messages marked `snapshot: true`, so that a client that
    /// (re)joins ends at the database's truth; clients keep the highest `version` of each row.
    /// A snapshot that cannot be read (the database does not answer within its deadline) is reported with a `system`
    /// error and a `phx_error` on the channel, on which clients join again (and a new join replaces this one).
    private func sendSnapshot(topic: String, joinRef: String?, subscriptions: [Subscription], connection: ConnectionHandle, logger: Logger) async {
        guard let snapshots else { return }
        for subscription in subscriptions {
            do {
                let (columns, rows) = try await snapshots.currentRows(table: subscription.table, filter: subscription.filter)
                let parts = subscription.table.split(separator: ".", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                for row in rows where subscription.filter.matches(row) {
                    let full = hub.policy.seesEverything(table: subscription.table, record: row, viewer: subscription.viewer)
                    let change = RowChange(
                        schema: parts[0], table: parts[1], kind: .update,
                        commitTimestamp: PgTimestamp(unixMicroseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)),
                        commitLSN: .invalid, xid: 0, columns: columns, record: row, oldRecord: [:], unchangedToastColumns: [])
                    var payload = ChangePayload.build(
                        change: change, kind: .update, ids: [subscription.bindingID],
                        visibleColumns: full ? nil : hub.policy.publicColumns(table: subscription.table),
                        select: subscription.select)
                    if case .object(var object) = payload, case .object(var data) = object["data"] {
                        data["snapshot"] = JSONValue.bool(true)
                        object["data"] = JSONValue.object(data)
                        payload = .object(object)
                    }
                    connection.outbox.enqueue(
                        .text(connection.serializer.encode(PhoenixMessage(topic: topic, event: "postgres_changes", payload: payload))))
                }
            } catch {
                logger.warning("snapshot failed", metadata: ["topic": "\(LogText.escape(topic))", "error": "\(describeError(error))"])
                hub.metrics.error(Self.databaseUnavailable)
                let system = PhoenixMessage(
                    joinRef: joinRef, topic: topic, event: "system",
                    payload: .object([
                        "extension": "postgres_changes", "status": "error",
                        "message": .string("\(Self.databaseUnavailable): the current rows could not be read in time; join again to load them"),
                        "channel": .string(String(topic.dropFirst("realtime:".count))),
                    ]))
                connection.outbox.enqueue(.text(connection.serializer.encode(system)))
                let failed = PhoenixMessage(joinRef: joinRef, ref: joinRef, topic: topic, event: "phx_error", payload: .object([:]))
                connection.outbox.enqueue(.text(connection.serializer.encode(failed)))
                return
            }
        }
    }
}

/// Lets a log line through at most once per `interval` seconds per key (bounded: forgets all keys past 10 000).
final class LogThrottle: Sendable {
    let interval: Double
    private let last = Mutex([String: Double]())

    init(interval: Double) { self.interval = interval }

    func shouldLog(_ key: String, now: Double = ProcessInfo.processInfo.systemUptime) -> Bool {
        last.withLock { last in
            if let previous = last[key], now - previous < interval { return false }
            if last.count > 10_000 { last.removeAll() }
            last[key] = now
            return true
        }
    }
}
