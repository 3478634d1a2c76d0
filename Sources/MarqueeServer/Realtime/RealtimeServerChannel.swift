import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import MarqueeCore
import NIOWebSocket

/// The server's connections: HTTP/1.1 for the API and the pages, and on the realtime paths an upgrade to a WebSocket
/// that is served by NIO handlers on the connection's event loop (``RealtimeSocketHandler``), with no task per socket.
///
/// A socket costs its channel, a few handlers and its session state; nothing waits for it while it is idle. Requests
/// that are not upgrades go to the router as usual.
public struct RealtimeServerChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        /// A realtime socket: its handlers run it from here on.
        case realtime
        /// An HTTP connection.
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// A refused upgrade (not a realtime path, or an unknown `vsn`): answered with what was wrong, then closed (a
        /// WebSocket client waits for the close to report the failure).
        case refusedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, APIError)
        /// A connection the budget refused: answered and closed at once, before anything was read.
        case refused
    }

    public struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        public let channel: any Channel
    }

    /// How connections are admitted and bounded before they are HTTP requests or sockets.
    public struct Connections: Sendable {
        /// The one budget of TCP connections, HTTP and WebSocket together.
        public var budget: ConnectionBudget
        /// Peers whose `X-Forwarded-For` / `Forwarded` name the client (and who are exempt from the per-address cap).
        public var trustedProxies: TrustedProxies
        /// How long a new connection may take to send its first request head; nil: no limit.
        public var requestHeadTimeout: TimeAmount?

        public init(budget: ConnectionBudget = .unlimited, trustedProxies: TrustedProxies = .none, requestHeadTimeout: TimeAmount? = .seconds(10)) {
            self.budget = budget
            self.trustedProxies = trustedProxies
            self.requestHeadTimeout = requestHeadTimeout
        }
    }

    public let responder: HTTPChannelHandler.Responder
    let gateway: RealtimeGateway
    let http1: HTTP1Channel.Configuration
    let connections: Connections

    public init(
        responder: @escaping HTTPChannelHandler.Responder, gateway: RealtimeGateway, http1: HTTP1Channel.Configuration = .init(),
        connections: Connections = Connections()
    ) {
        self.responder = responder
        self.gateway = gateway
        self.http1 = http1
        self.connections = connections
    }

    /// The server builder for ``Application``.
    public static func builder(
        gateway: RealtimeGateway, http1: HTTP1Channel.Configuration = .init(), connections: Connections = Connections()
    ) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in RealtimeServerChannel(responder: responder, gateway: gateway, http1: http1, connections: connections) }
    }

    /// The key of a peer whose address is unknown (not an IP socket).
    static let unknownPeer = IPAddress(v6: 0, 0)

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let budget = connections.budget
            let peer = channel.remoteAddress?.ipAddress.flatMap { IPAddress($0) } ?? Self.unknownPeer
            let connection: ConnectionBudget.Connection
            switch budget.admit(address: peer, exempt: connections.trustedProxies.contains(peer), channel: channel) {
            case .admitted(let admitted):
                connection = admitted
            case .refused(let refusal):
                Self.refuse(channel: channel, refusal, budget: budget, peer: peer, logger: logger)
                return Value(upgradeResult: channel.eventLoop.makeSucceededFuture(.refused), channel: channel)
            }
            channel.closeFuture.whenComplete { _ in budget.release(connection) }
            do {
                // a channel keeps its last read buffer for the next read: start it small (NIO's default is 2 KB, most of
                // an idle socket's memory), and let it grow for connections that send more
                try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.readBuffers)
                // the HTTP pipeline is built when the first bytes arrive: until then the guard is all there is
                let upgradeResult = channel.eventLoop.makePromise(of: UpgradeResult.self)
                let sniffer = RequestLineSniffer()
                let guardHandler = ConnectionGuard(
                    connection: connection, sniffer: sniffer, headTimeout: connections.requestHeadTimeout, metrics: budget.metrics,
                    configure: { context in
                        let result = try configure(channel: context.channel, connection: connection, sniffer: sniffer, logger: logger)
                        result.cascade(to: upgradeResult)
                    },
                    unconfigured: { upgradeResult.fail($0) })
                try channel.pipeline.syncOperations.addHandler(guardHandler, name: Self.connectionGuardName)
                return Value(upgradeResult: upgradeResult.futureResult, channel: channel)
            } catch {
                channel.close(promise: nil)
                throw error
            }
        }
    }

    /// Answers a connection the budget refused (before reading anything: the answer is there when the client reads)
    /// and closes it.
    static func refuse(channel: any Channel, _ refusal: ConnectionBudget.Refusal, budget: ConnectionBudget, peer: IPAddress, logger: Logger) {
        let error: APIError
        var extra = ""
        switch refusal {
        case .perAddress:
            error = APIError(
                .tooManyRequests, "too_many_connections",
                "this address has \(budget.limits.maxPerAddress) connections open already; close some before opening more")
        case .full:
            error = APIError(.serviceUnavailable, "server_busy", "the server is at its connection limit; try again shortly")
            extra = "Retry-After: 5\r\n"
        }
        if let suppressed = budget.shouldLog(refusal) {
            logger.warning(
                "connection refused",
                metadata: [
                    "reason": "\(refusal == .perAddress ? "per_address" : "server_full")", "client": "\(peer)",
                    "open": "\(budget.count())", "refused_since_last_line": "\(suppressed)",
                ])
        }
        let body = error.body
        var buffer = channel.allocator.buffer(capacity: 256 + body.utf8.count)
        buffer.writeString(
            "HTTP/1.1 \(error.status.code) \(error.status.reasonPhrase)\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\(extra)\r\n\(body)"
        )
        channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The pipeline of an admitted connection that has sent its first bytes, after its ``ConnectionGuard``: NIO's
    /// HTTP/1.1 server pipeline with the WebSocket upgrade of the realtime paths, and the ``HTTPRequestGuard``.
    private func configure(
        channel: any Channel, connection: ConnectionBudget.Connection, sniffer: RequestLineSniffer, logger: Logger
    ) throws -> EventLoopFuture<UpgradeResult> {
        let gateway = self.gateway
        let budget = connections.budget
        let trustedProxies = connections.trustedProxies
        // the accepted upgrade's parameters, or why it was refused (the request itself is not passed on to the
        // HTTP handling)
        let accepted = NIOLoopBoundBox<SocketRequest?>(nil, eventLoop: channel.eventLoop)
        let refusal = NIOLoopBoundBox<APIError?>(nil, eventLoop: channel.eventLoop)
        let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
            maxFrameSize: gateway.configuration.maxFrameBytes,
            // protocol errors are answered by the socket handler, with the close code of each
            enableAutomaticErrorHandling: false,
            shouldUpgrade: { channel, head in
                accepted.value = SocketRequest(head, channel: channel, trustedProxies: trustedProxies)
                guard accepted.value != nil else {
                    refusal.value = SocketRequest.refusal(head)
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard let request = accepted.value else { throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget }
                    let operations = channel.pipeline.syncOperations
                    // a socket from now on: never shed, no request heads to time, no HTTP errors to answer
                    budget.upgraded(connection)
                    operations.removeHandler(name: Self.connectionGuardName, promise: nil)
                    operations.removeHandler(name: Self.requestGuardName, promise: nil)
                    try operations.addHandler(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16,
                            maxAccumulatedFrameSize: gateway.configuration.maxFrameBytes))
                    try operations.addHandler(RealtimeSocketHandler(gateway: gateway, request: request))
                    return UpgradeResult.realtime
                }
            }
        )
        let http1 = self.http1
        let upgrades = NIOTypedHTTPServerUpgradeConfiguration(
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                    try operations.addHandlers(http1.additionalChannelHandlers())
                    try operations.addHandler(HTTPConnectionStateHandler(idleTimeout: http1.idleTimeout.map { .init($0) }, logger: logger))
                    let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                    return refusal.value.map { UpgradeResult.refusedUpgrade(http, $0) } ?? UpgradeResult.http(http)
                }
            }
        )
        var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: upgrades)
        configuration.enablePipelining = false  // requests are taken one at a time by the async channel
        configuration.enableErrorHandling = false  // parse errors are answered by HTTPRequestGuard, with a JSON body
        configuration.enableResponseHeaderValidation = false  // HTTP types validate their fields
        let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
        // after the upgrade handler, so that it sees the parser's errors and the requests of a connection that did
        // not upgrade (and none of the bytes an upgrade leaves over)
        try channel.pipeline.syncOperations.addHandler(
            HTTPRequestGuard(connection: connection, sniffer: sniffer, metrics: budget.metrics), name: Self.requestGuardName)
        return result
    }

    static let connectionGuardName = "marquee.connection-guard"
    static let requestGuardName = "marquee.request-guard"

    /// Read buffers of 512 bytes at first (an upgrade request or a frame fits), growing up to 64 KB while reads fill them.
    static let readBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .realtime, .refused:
                return  // the socket's handlers serve it on its event loop; a refused connection is closing already
            case .http(let channel):
                await handleHTTP(asyncChannel: channel, logger: logger)
            case .refusedUpgrade(let channel, let refusal):
                try await channel.executeThenClose { _, outbound in
                    let body = ByteBuffer(string: refusal.body)
                    let fields: HTTPFields = [
                        .contentType: "application/json; charset=utf-8", .contentLength: "\(body.readableBytes)", .connection: "close",
                    ]
                    try await outbound.write(contentsOf: [.head(HTTPResponse(status: refusal.status, headerFields: fields)), .body(body), .end(nil)])
                }
            }
        } catch is ChannelError {
            // closed before its first request: by the client, the head timeout, a parse error or shedding
            logger.trace("connection closed before its first request")
        } catch {
            logger.debug("connection setup failed", metadata: ["error": "\(error)"])
        }
    }
}

/// What a realtime socket keeps of its upgrade request.
struct SocketRequest: Sendable {
    let serializer: PhoenixSerializer
    /// The `apikey` (header `x-api-key` or `apikey`, or query `apikey`), if any.
    var apiKey: String?
    /// The client's address, for the per-address limit: the TCP peer, or behind a trusted proxy the address it
    /// forwarded for.
    let address: String

    /// Why an upgrade request is refused.
    static func refusal(_ head: HTTPRequestHead) -> APIError {
        let uri = URI(head.uri)
        guard RealtimeGateway.paths.contains(uri.path) else {
            return APIError(.notFound, "not_found", "there is no WebSocket endpoint at \(uri.path); use \(RealtimeGateway.paths[0])")
        }
        return APIError(.badRequest, "unsupported_vsn", "vsn must be 1.0.0 or 2.0.0")
    }

    /// The request's socket parameters, or nil when it is not a realtime path or asks for an unknown `vsn`.
    init?(_ head: HTTPRequestHead, channel: any Channel, trustedProxies: TrustedProxies = .none) {
        let uri = URI(head.uri)
        guard RealtimeGateway.paths.contains(uri.path), let serializer = PhoenixSerializer(vsn: uri.queryParameters.get("vsn")) else { return nil }
        self.serializer = serializer
        self.apiKey = head.headers.first(name: "x-api-key") ?? uri.queryParameters.get("apikey") ?? head.headers.first(name: "apikey")
        if let peer = channel.remoteAddress?.ipAddress.flatMap({ IPAddress($0) }) {
            self.address =
                trustedProxies.clientAddress(peer: peer, forwardedFor: head.headers["x-forwarded-for"], forwarded: head.headers["forwarded"])
                .description
        } else {
            self.address = "unknown"
        }
    }
}
