import Foundation
import Logging
import MarqueeCore
import NIOCore
import NIOWebSocket

/// Serves one realtime socket on its channel's event loop: WebSocket frames in, the session's frames out (through its
/// ``Outbox`` and the ``FrameWriteHandler``), the close handshake, and the socket's limits.
///
/// Nothing waits for an idle socket: no task, no async channel. Frames whose handling must wait (a join, whose token
/// and topic access are checked and whose snapshot or replay is read from the database; a token refresh) run as one
/// short task, and the socket's later frames wait for it in order; every other frame is handled at once on the loop.
final class RealtimeSocketHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// A socket admitted under its limits.
    final class Admitted {
        let connection: ConnectionHandle
        var session: RealtimeSession
        let keys: [String]
        let client: String
        let started = ContinuousClock.now

        init(connection: ConnectionHandle, session: RealtimeSession, keys: [String], client: String) {
            self.connection = connection
            self.session = session
            self.keys = keys
            self.client = client
        }
    }

    enum Phase {
        /// Checking the connect token and the connection limits; frames wait.
        case connecting
        case open(Admitted)
        /// A close frame was sent; the client's answer (or a grace period) ends the connection.
        case closing
        case closed
    }

    /// A data frame's content.
    enum Inbound {
        case text(String)
        case binary([UInt8])
    }

    /// Frames held while an earlier one is handled past which the socket stops reading until they are done.
    static let maxWaitingFrames = 64
    /// Text frames at least this long are decoded off the event loop, so one socket's large frames do not hold up the
    /// other sockets of its loop.
    static let offLoopDecodeBytes = 16 * 1024

    /// Why reading is paused (reading goes on when there is no reason left).
    struct ReadPause: OptionSet {
        let rawValue: UInt8
        /// Too many frames wait for an earlier one.
        static let waiting = ReadPause(rawValue: 1)
        /// The socket spent its inbound byte budget; reading resumes when it is paid back.
        static let budget = ReadPause(rawValue: 2)
    }
    /// How long a client has to answer a close frame before the connection is closed anyway.
    static let closeGracePeriod = TimeAmount.seconds(2)

    private let gateway: RealtimeGateway
    /// The upgrade request's parameters (the `apikey` is dropped once checked).
    private var request: SocketRequest
    private let id: Int
    private var context: ChannelHandlerContext?
    private var phase = Phase.connecting
    /// An earlier frame's handling is under way (or the connect check): frames wait in ``waiting``.
    private var busy = false
    /// (An array: empty, it allocates nothing, which matters for thousands of idle sockets.)
    private var waiting: [Inbound] = []
    private var readPauses: ReadPause = []
    private var closeReason = "client closed"
    /// Bytes per second the client may send (its frames are decoded and handled at the server's cost).
    private var inboundBudget: TokenBucket
    /// When the earliest token of a joined channel expires, and the timer set for it.
    private var expiryTimer: (at: Date, task: Scheduled<Void>)?
    /// Lets unreadable-frame lines through at most every 10 s per socket.
    private var lastBadFrameLog: NIODeadline?
    /// The admitted socket's, kept for the log line when the socket is gone.
    private var admitted: Admitted?

    init(gateway: RealtimeGateway, request: SocketRequest) {
        self.gateway = gateway
        self.request = request
        self.id = gateway.makeConnectionID()
        let configuration = gateway.configuration
        self.inboundBudget = TokenBucket(
            rate: configuration.inboundBytesPerSecond, burst: max(configuration.inboundBytesPerSecond, Double(configuration.maxFrameBytes)))
    }

    private var logger: Logger {
        var logger = gateway.logger
        logger[metadataKey: "connection"] = "\(id)"
        return logger
    }

    // MARK: Connecting

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard let key = request.apiKey, !key.isEmpty else {
            admit(connectCheck: .invalid("InvalidJWTToken: API key is missing"))
            return
        }
        busy = true
        request.apiKey = nil
        let gateway = self.gateway
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        // verification is asynchronous (the key collection is an actor): frames wait until it is done
        Task {
            let check = await gateway.check(key)
            loop.execute {
                handler.value.admit(connectCheck: check)
                handler.value.stepEnded()
            }
        }
    }

    private func admit(connectCheck: TokenCheck) {
        guard case .connecting = phase, let context else { return }
        let configuration = gateway.configuration
        var keys: [(key: String, limit: Int)] = [
            (RealtimeGateway.allConnections, configuration.maxConnections), ("ip:\(request.address)", configuration.maxConnectionsPerIP),
        ]
        var client = "ip:\(request.address)"
        if case .valid(let viewer, _) = connectCheck, let user = viewer.userID {
            keys.append(("user:\(user)", configuration.maxConnectionsPerUser))
            client += " user:\(user)"
        }
        if let full = gateway.hub.admit(keys: keys) {
            let limit: LimitName =
                full == RealtimeGateway.allConnections ? .connections : full.hasPrefix("ip:") ? .connectionsPerIP : .connectionsPerUser
            gateway.recordLimit(limit, client: full, logger: logger)
            let what = limit == .connections ? "on this server" : limit == .connectionsPerIP ? "from this address" : "for this user"
            close(
                code: limit == .connections ? 1013 : 1008, reason: "\(limit.rawValue): Too many connections \(what)",
                why: "refused: \(limit.rawValue)")
            return
        }
        let sink = SocketSink(loop: gateway.loopWriters.writer(for: context.eventLoop))
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        sink.onClose.value = { code, reason in handler.value.close(code: code, reason: reason, why: "server closed (\(code)): \(reason)") }
        let outbox = Outbox(capacity: configuration.outboxCapacity, maxBytes: configuration.outboxBytes, sink: sink)
        let connection = ConnectionHandle(id: id, serializer: request.serializer, outbox: outbox)
        do {
            try context.pipeline.syncOperations.addHandler(FrameWriteHandler(outbox: outbox), position: .first)
        } catch {
            logger.debug("realtime socket closed before it was set up", metadata: ["error": "\(error)"])
            gateway.hub.release(keys: keys.map(\.key))
            context.close(promise: nil)
            return
        }
        let admitted = Admitted(
            connection: connection,
            session: RealtimeSession(connectionID: id, connectToken: connectCheck, policy: gateway.hub.policy, limits: configuration.limits),
            keys: keys.map(\.key), client: client)
        self.admitted = admitted
        phase = .open(admitted)
        gateway.hub.register(connection)
        logger.info("realtime connected", metadata: ["vsn": "\(request.serializer.rawValue)", "token": "\(connectCheck.summary)"])
    }

    // MARK: Frames in

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            guard let text = String(validating: frame.unmaskedData.readableBytesView, as: UTF8.self) else {
                close(code: 1007, reason: "invalid UTF-8 in a text frame", why: "read failed: invalid UTF-8")
                return
            }
            accept(.text(text), bytes: frame.length)
        case .binary:
            accept(.binary(Array(frame.unmaskedData.readableBytesView)), bytes: frame.length)
        case .ping:
            if case .closed = phase { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            if case .closing = phase {
                context.close(promise: nil)  // the answer to our close frame
                return
            }
            // answer with the client's code, then close
            var code = frame.unmaskedData
            let echo = code.readInteger(as: UInt16.self)
            closeReason = "client closed"
            phase = .closing
            var data = context.channel.allocator.buffer(capacity: 2)
            if let echo { data.writeInteger(echo) }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).assumeIsolated().whenComplete {
                _ in context.close(promise: nil)
            }
        default:
            close(code: 1002, reason: "unexpected frame", why: "read failed: unexpected opcode \(frame.opcode)")
        }
    }

    private func accept(_ inbound: Inbound, bytes: Int) {
        switch phase {
        case .connecting, .open: break
        case .closing, .closed: return
        }
        gateway.hub.metrics.framesIn.increment()
        let wait = inboundBudget.spend(Double(bytes), now: ProcessInfo.processInfo.systemUptime)
        if wait > 0, !readPauses.contains(.budget), let context {
            // the client sends faster than its budget: stop reading until it is paid back (TCP holds the rest)
            if case .open(let admitted) = phase { gateway.recordLimit(.inboundBytes, client: admitted.client, logger: logger) }
            pauseReading(.budget)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64((wait * 1000).rounded(.up)))) { handler.value.resumeReading(.budget) }
        }
        if busy || !waiting.isEmpty {
            waiting.append(inbound)
            if waiting.count >= Self.maxWaitingFrames { pauseReading(.waiting) }
            return
        }
        handle(inbound)
    }

    /// Handles one data frame: at once, or by starting the task that does its waiting (then ``busy`` is set). A large
    /// frame is decoded off the loop first.
    private func handle(_ inbound: Inbound) {
        guard case .open(let admitted) = phase, let context else { return }
        let connection = admitted.connection
        if case .text(let text) = inbound, text.utf8.count >= Self.offLoopDecodeBytes {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let bytes = text.utf8.count
            runStep(connection: connection, client: admitted.client) { loop in
                let decoded = Result { () throws(FrameError) -> PhoenixMessage in try connection.serializer.decode(text) }
                let next = try? await loop.submit { handler.value.take(decoded, bytes: bytes) }.get()
                return await next?(loop) ?? []
            }
            return
        }
        let decoded: Result<PhoenixMessage, FrameError>
        switch inbound {
        case .text(let text): decoded = Result { () throws(FrameError) -> PhoenixMessage in try connection.serializer.decode(text) }
        case .binary(let bytes): decoded = Result { () throws(FrameError) -> PhoenixMessage in try PhoenixSerializer.decodeBinaryBroadcast(bytes) }
        }
        let bytes: Int
        switch inbound {
        case .text(let text): bytes = text.utf8.count
        case .binary(let data): bytes = data.count
        }
        if let work = take(decoded, bytes: bytes) { runStep(connection: connection, client: admitted.client, work) }
    }

    /// On the loop, a decoded frame (or why it could not be): handled at once, or the work that must wait (a join's
    /// checks, a snapshot) returned to run as a step.
    private func take(
        _ decoded: Result<PhoenixMessage, FrameError>, bytes: Int
    ) -> (@Sendable (any EventLoop) async -> [RealtimeSession.Action])? {
        guard case .open(let admitted) = phase, let context else { return nil }
        let connection = admitted.connection
        let message: PhoenixMessage
        switch decoded {
        case .success(let decodedMessage): message = decodedMessage
        case .failure(let error):
            gateway.hub.metrics.badFrames.increment()
            // unreadable frames count against the message rate; past it they are dropped without an answer
            guard admitted.session.takeUnreadableFrame() else {
                gateway.recordLimit(.messages, client: admitted.client, logger: logger)
                return nil
            }
            let now = NIODeadline.now()
            if lastBadFrameLog.map({ now - $0 >= .seconds(10) }) ?? true {
                lastBadFrameLog = now
                logger.info("unreadable frame", metadata: ["error": "\(LogText.escape(error.message))"])
            }
            connection.outbox.enqueue(
                .text(
                    connection.serializer.encode(
                        PhoenixMessage(
                            topic: "phoenix", event: "phx_reply",
                            payload: .object(["status": "error", "response": .object(["reason": .string(error.message)])])
                        ))))
            return nil
        }
        let token = RealtimeSession.tokenToCheck(message)
        guard message.event == "phx_join" || message.event == "access_token" else {
            let now = Date()
            let actions = admitted.session.receive(message, frameBytes: bytes, now: now)
            armExpiry()
            let rest = gateway.performNow(actions[...], connection: connection, client: admitted.client, logger: logger)
            if rest.isEmpty { return nil }
            return { _ in Array(rest) }
        }
        // the token and the topic's rights are checked first, off the loop; the session then takes the frame here
        let session = admitted.session  // no other frame is handled until this one is done
        let gateway = self.gateway
        let logger = self.logger
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        return { loop in
            let check = if let token { await gateway.check(token) } else { TokenCheck?.none }
            var rights: TopicRights?
            if let question = session.topicToCheck(message, token: check) {
                switch await gateway.access(question, logger: logger) {
                case .decided(let decided):
                    rights = decided
                case .unavailable(let reason) where message.event == "phx_join":
                    // the join cannot be decided now: refuse it with a reason the client can retry on
                    gateway.refuse(message, reason: reason, connection: connection, logger: logger)
                    return []
                case .unavailable:
                    rights = TopicRights.none  // a token refresh on a private channel keeps failing closed
                }
            }
            let decided = rights
            let rest = try? await loop.submit { handler.value.receive(message, token: check, rights: decided, bytes: bytes) }.get()
            return rest ?? []
        }
    }

    /// On the loop, for a frame whose checks are done: the session's actions, performed up to the first that waits.
    private func receive(_ message: PhoenixMessage, token: TokenCheck?, rights: TopicRights?, bytes: Int) -> [RealtimeSession.Action] {
        guard case .open(let admitted) = phase else { return [] }
        let now = Date()
        let actions =
            admitted.session.receive(message, token: token, rights: rights, frameBytes: bytes, now: now) + admitted.session.expireTokens(now: now)
        armExpiry()
        return Array(gateway.performNow(actions[...], connection: admitted.connection, client: admitted.client, logger: logger))
    }

    // MARK: Token expiry

    /// Sets a timer for the earliest token expiry of the joined channels, so that a channel whose token expires is
    /// closed within moments of `exp`, whether or not the client sends anything.
    private func armExpiry() {
        guard case .open(let admitted) = phase, let context else { return }
        let next = admitted.session.nextExpiry
        if let current = expiryTimer, current.at == next { return }
        expiryTimer?.task.cancel()
        expiryTimer = nil
        guard let next else { return }
        let delay = max(0, next.timeIntervalSinceNow)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(in: .milliseconds(Int64((delay * 1000).rounded(.up)) + 1)) {
            handler.value.expiryTimerFired()
        }
        expiryTimer = (next, task)
    }

    private func expiryTimerFired() {
        expiryTimer = nil
        guard case .open(let admitted) = phase else { return }
        let actions = admitted.session.expireTokens(now: Date())
        let rest = gateway.performNow(actions[...], connection: admitted.connection, client: admitted.client, logger: logger)
        if !rest.isEmpty { runStep(connection: admitted.connection, client: admitted.client) { _ in Array(rest) } }
        armExpiry()
    }

    /// Runs `work` as a task, then the actions it returns, while the socket's later frames wait; then goes on with them.
    private func runStep(
        connection: ConnectionHandle, client: String, _ work: @escaping @Sendable (any EventLoop) async -> [RealtimeSession.Action]
    ) {
        guard let context else { return }
        busy = true
        let gateway = self.gateway
        let logger = self.logger
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        Task {
            let actions = await work(loop)
            await gateway.perform(actions, connection: connection, client: client, logger: logger)
            loop.execute { handler.value.stepEnded() }
        }
    }

    private func stepEnded() {
        busy = false
        while !busy, !waiting.isEmpty { handle(waiting.removeFirst()) }
        if readPauses.contains(.waiting) && waiting.count < Self.maxWaitingFrames / 2 { resumeReading(.waiting) }
    }

    private func pauseReading(_ reason: ReadPause) {
        guard let context else { return }
        let wasReading = readPauses.isEmpty
        readPauses.insert(reason)
        if wasReading { try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false) }
    }

    private func resumeReading(_ reason: ReadPause) {
        guard readPauses.contains(reason), let context else { return }
        readPauses.remove(reason)
        guard readPauses.isEmpty else { return }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        context.read()
    }

    // MARK: Closing

    /// Sends a close frame and ends the socket's session; the connection closes when the client answers, or after a
    /// grace period.
    func close(code: UInt16, reason: String, why: String) {
        switch phase {
        case .closing, .closed: return
        case .connecting, .open: break
        }
        guard let context else { return }
        phase = .closing
        closeReason = why
        waiting.removeAll()
        expiryTimer?.task.cancel()
        expiryTimer = nil
        if let admitted { admitted.connection.outbox.finish() }
        logger.notice("closing realtime socket", metadata: ["reason": "\(LogText.escape(reason))", "code": "\(code)"])
        let text = reason.utf8.count <= 123 ? reason : String(decoding: reason.utf8.prefix(123), as: UTF8.self)
        var data = context.channel.allocator.buffer(capacity: 2 + text.utf8.count)
        data.writeInteger(code)
        data.writeString(text)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: Self.closeGracePeriod) { handler.value.context?.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            close(code: 1001, reason: "server shutting down", why: "server shutting down")
            return
        }
        if case .inputClosed = event as? ChannelEvent {
            // the client shut its side down (the server allows half-closed connections): nothing more will come
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength, NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            if let admitted { gateway.recordLimit(.frameSize, client: admitted.client, logger: logger) }
            close(code: 1009, reason: "FrameTooLarge: a frame is larger than \(gateway.configuration.maxFrameBytes) bytes", why: "frame too large")
        case is NIOWebSocketError, is NIOWebSocketFrameAggregator.Error:
            close(code: 1002, reason: "protocol error", why: "read failed: \(error)")
        default:
            if closeReason == "client closed" { closeReason = "read failed: \(describeError(error))" }
            logger.debug("realtime read ended", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closed
        waiting.removeAll()
        expiryTimer?.task.cancel()
        expiryTimer = nil
        if let admitted {
            admitted.connection.outbox.finish()
            admitted.connection.outbox.sink?.onClose.value = nil  // the sink's callback holds this handler
            gateway.hub.unregister(id)
            gateway.hub.release(keys: admitted.keys)
            let elapsed = (ContinuousClock.now - admitted.started).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            logger.info(
                "realtime disconnected", metadata: ["duration": "\(String(format: "%.3f", seconds))", "reason": "\(LogText.escape(closeReason))"])
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }
}
