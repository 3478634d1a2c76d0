import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import MarqueeCore
import NIOCore
import Synchronization

/// Loads current rows for Marquee's snapshot extension.
public protocol SnapshotSource: Sendable {
    /// The current rows of `table` ("schema.table") that may match `filter`, with their column types.
    func currentRows(table: String, filter: ChangeFilter) async throws -> (columns: [RowChange.Column], rows: [JSONObject])
}

/// The realtime endpoint: accepts sockets, runs each one's session, and performs its actions against the hub.
public final class RealtimeGateway: Sendable {
    public struct Configuration: Sendable {
        public var maxFrameBytes = 1 << 20
        public var outboxCapacity = 4096
        public var limits = SessionLimits()
        public init() {}
    }

    let hub: RealtimeHub
    let authority: TokenAuthority
    let snapshots: (any SnapshotSource)?
    let broadcasts: (any BroadcastStore)?
    let configuration: Configuration
    let logger: Logger
    private let nextConnectionID = Atomic<Int>(0)

    public init(
        hub: RealtimeHub, authority: TokenAuthority, snapshots: (any SnapshotSource)?, broadcasts: (any BroadcastStore)? = nil,
        configuration: Configuration = Configuration(), logger: Logger
    ) {
        self.hub = hub
        self.authority = authority
        self.snapshots = snapshots
        self.broadcasts = broadcasts
        self.configuration = configuration
        self.logger = logger
    }

    /// The paths Supabase clients use.
    public static let paths = ["/realtime/v1/websocket", "/socket/websocket"]

    func addRoutes(to router: Router<BasicWebSocketRequestContext>) {
        for path in Self.paths {
            router.ws(RouterPath(path)) { request, _ in
                try await self.checkUpgrade(request)
                return .upgrade([:])
            } onUpgrade: { inbound, outbound, context in
                try await self.serve(inbound: inbound, outbound: outbound, request: context.request)
            }
        }
    }

    /// Refuses the upgrade only for an unknown `vsn`. A missing or bad `apikey` is reported on each join that does not
    /// bring a valid token of its own, as a `phx_reply` error with the reason, which clients show to the developer.
    func checkUpgrade(_ request: Request) async throws {
        guard PhoenixSerializer(vsn: request.uri.queryParameters.get("vsn")) != nil else {
            throw APIError(.badRequest, "unsupported_vsn", "vsn must be 1.0.0 or 2.0.0")
        }
    }

    private func connectToken(_ request: Request) async -> TokenCheck {
        let key = request.headers[HTTPField.Name("x-api-key")!] ?? request.uri.queryParameters.get("apikey") ?? request.headers[HTTPField.Name("apikey")!]
        guard let key, !key.isEmpty else { return .invalid("InvalidJWTToken: API key is missing") }
        return await check(key)
    }

    /// Runs one socket: a reader task feeds the session; a writer task drains the socket's outbox.
    func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, request: Request) async throws {
        let serializer = PhoenixSerializer(vsn: request.uri.queryParameters.get("vsn")) ?? .v1
        let connectCheck = await connectToken(request)
        let id = nextConnectionID.add(1, ordering: .relaxed).newValue
        let outbox = Outbox(capacity: configuration.outboxCapacity)
        let connection = ConnectionHandle(id: id, serializer: serializer, outbox: outbox)
        let logger: Logger = {
            var logger = self.logger
            logger[metadataKey: "connection"] = "\(id)"
            return logger
        }()
        let started = ContinuousClock.now
        hub.register(connection)
        logger.info("realtime connected", metadata: ["vsn": "\(serializer.rawValue)", "token": "\(connectCheck.summary)"])
        defer {
            hub.unregister(id)
            logger.info("realtime disconnected", metadata: ["duration": "\(ContinuousClock.now - started)"])
        }

        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while let frame = await outbox.next() {
                    do {
                        switch frame {
                        case .text(let text):
                            try await outbound.write(.text(text))
                        case .close(let code, let reason):
                            logger.notice("closing realtime socket", metadata: ["reason": "\(reason)"])
                            try await outbound.close(.unknown(code), reason: reason)
                            return
                        }
                    } catch {
                        return
                    }
                }
            }
            var session = RealtimeSession(connectionID: id, connectToken: connectCheck, policy: hub.policy, limits: configuration.limits)
            do {
                for try await message in inbound.messages(maxSize: configuration.maxFrameBytes) {
                    hub.metrics.framesIn.add(1)
                    let decoded: PhoenixMessage
                    do {
                        switch message {
                        case .text(let text): decoded = try serializer.decode(text)
                        case .binary(let buffer): decoded = try PhoenixSerializer.decodeBinaryBroadcast(Array(buffer.readableBytesView))
                        }
                    } catch {
                        hub.metrics.badFrames.add(1)
                        let reason = (error as? FrameError)?.message ?? "\(error)"
                        logger.debug("bad frame", metadata: ["error": "\(reason)"])
                        outbox.enqueue(
                            .text(
                                serializer.encode(
                                    PhoenixMessage(
                                        topic: "phoenix", event: "phx_reply",
                                        payload: .object(["status": "error", "response": .object(["reason": .string(reason)])])))))
                        continue
                    }
                    var check: TokenCheck?
                    if let token = RealtimeSession.tokenToCheck(decoded) { check = await self.check(token) }
                    var access: Bool?
                    if let (topic, viewer) = session.privateTopicToCheck(decoded, token: check) {
                        access = await self.mayJoin(topic: topic, viewer: viewer, logger: logger)
                    }
                    let actions = session.receive(decoded, token: check, topicAccess: access, now: Date()) + session.expireTokens(now: Date())
                    await perform(actions, connection: connection, logger: logger)
                }
            } catch {
                logger.debug("realtime read ended", metadata: ["error": "\(error)"])
            }
            outbox.finish()
            group.cancelAll()
        }
    }

    func check(_ token: String) async -> TokenCheck {
        do {
            let claims = try await authority.verify(token)
            return .valid(Viewer(claims), expiresAt: claims.exp?.value)
        } catch {
            switch error.code {
            case .expired: return .invalid("InvalidJWTToken: Token has expired")
            case .invalid where error.message.contains("signature"): return .invalid("JwtSignatureError: Failed to validate JWT signature")
            case .invalid: return .invalid("MalformedJWT: The token provided is not a valid JWT")
            default: return .invalid("InvalidJWTToken: \(error.message)")
            }
        }
    }

    func perform(_ actions: [RealtimeSession.Action], connection: ConnectionHandle, logger: Logger) async {
        for action in actions {
            switch action {
            case .send(let message):
                connection.outbox.enqueue(.text(connection.serializer.encode(message)))
            case .subscribe(let topic, let joinRef, let subscriptions, let membership):
                hub.join(connectionID: connection.id, topic: topic, joinRef: joinRef, subscriptions: subscriptions, membership: membership)
                logger.info(
                    "realtime joined", metadata: ["topic": "\(topic)", "bindings": "\(subscriptions.count)", "private": "\(membership.isPrivate)"])
                if let since = membership.replaySince {
                    await replay(topic: topic, since: since, limit: membership.replayLimit, connection: connection, logger: logger)
                }
            case .unsubscribe(let topic):
                hub.leave(connectionID: connection.id, topic: topic)
                logger.info("realtime left", metadata: ["topic": "\(topic)"])
            case .broadcast(let topic, let payload):
                hub.broadcast(topic: topic, payload: payload, from: connection.id)
            case .trackPresence(let topic, let key, let payload):
                hub.trackPresence(topic: topic, key: key, connectionID: connection.id, payload: payload)
            case .untrackPresence(let topic):
                hub.untrackPresence(topic: topic, connectionID: connection.id)
            case .sendPresenceState(let topic, let joinRef):
                let message = PhoenixMessage(joinRef: joinRef, topic: topic, event: "presence_state", payload: hub.presenceState(topic: topic))
                connection.outbox.enqueue(.text(connection.serializer.encode(message)))
            case .snapshot(let topic, _, let subscriptions):
                await sendSnapshot(topic: topic, subscriptions: subscriptions, connection: connection, logger: logger)
            }
        }
    }

    /// Decides access to a private topic; a failing database refuses (and logs), it never opens the topic.
    func mayJoin(topic: String, viewer: Viewer, logger: Logger) async -> Bool {
        guard let broadcasts else { return false }
        do {
            return try await broadcasts.canJoin(topic: topic, viewer: viewer)
        } catch {
            logger.warning("private topic check failed", metadata: ["error": "\(describeError(error))"])
            return false
        }
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
                logger.warning("replay failed", metadata: ["topic": "\(topic)", "error": "\(describeError(error))"])
            }
        }
        hub.finishReplay(connectionID: connection.id, topic: topic, replayedIDs: replayed)
    }

    /// Sends the current rows as `postgres_changes` UPDATE messages marked `snapshot: true`, so that a client that
    /// (re)joins ends at the database's truth; clients keep the highest `version` of each row.
    private func sendSnapshot(topic: String, subscriptions: [Subscription], connection: ConnectionHandle, logger: Logger) async {
        guard let snapshots else { return }
        for subscription in subscriptions {
            do {
                let (columns, rows) = try await snapshots.currentRows(table: subscription.table, filter: subscription.filter)
                let parts = subscription.table.split(separator: ".", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                for row in rows where subscription.filter.matches(row) {
                    let full = hub.policy.seesEverything(table: subscription.table, record: row, viewer: subscription.viewer)
                    let change = RowChange(
                        schema: parts[0], table: parts[1], kind: .update, commitTimestamp: PgTimestamp(unixMicroseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)),
                        commitLSN: .invalid, xid: 0, columns: columns, record: row, oldRecord: [:], unchangedToastColumns: [])
                    var payload = ChangePayload.build(
                        change: change, kind: .update, ids: [subscription.bindingID], visibleColumns: full ? nil : hub.policy.publicColumns(table: subscription.table),
                        select: subscription.select)
                    if case .object(var object) = payload, case .object(var data) = object["data"] {
                        data["snapshot"] = JSONValue.bool(true)
                        object["data"] = JSONValue.object(data)
                        payload = .object(object)
                    }
                    connection.outbox.enqueue(.text(connection.serializer.encode(PhoenixMessage(topic: topic, event: "postgres_changes", payload: payload))))
                }
            } catch {
                logger.warning("snapshot failed", metadata: ["topic": "\(topic)", "error": "\(describeError(error))"])
            }
        }
    }
}
