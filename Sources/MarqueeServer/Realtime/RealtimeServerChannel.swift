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
    }

    public struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        public let channel: any Channel
    }

    public let responder: HTTPChannelHandler.Responder
    let gateway: RealtimeGateway
    let http1: HTTP1Channel.Configuration

    public init(responder: @escaping HTTPChannelHandler.Responder, gateway: RealtimeGateway, http1: HTTP1Channel.Configuration = .init()) {
        self.responder = responder
        self.gateway = gateway
        self.http1 = http1
    }

    /// The server builder for ``Application``.
    public static func builder(gateway: RealtimeGateway) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in RealtimeServerChannel(responder: responder, gateway: gateway) }
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // a channel keeps its last read buffer for the next read: start it small (NIO's default is 2 KB, most of an
            // idle socket's memory), and let it grow for connections that send more
            try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.readBuffers)
            let gateway = self.gateway
            // the accepted upgrade's parameters, or why it was refused (the request itself is not passed on to the
            // HTTP handling)
            let accepted = NIOLoopBoundBox<SocketRequest?>(nil, eventLoop: channel.eventLoop)
            let refusal = NIOLoopBoundBox<APIError?>(nil, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: gateway.configuration.maxFrameBytes,
                // protocol errors are answered by the socket handler, with the close code of each
                enableAutomaticErrorHandling: false,
                shouldUpgrade: { channel, head in
                    accepted.value = SocketRequest(head, channel: channel)
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
            configuration.enableErrorHandling = false  // parse errors are answered by the HTTP handling
            configuration.enableResponseHeaderValidation = false  // HTTP types validate their fields
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(upgradeResult: result, channel: channel)
        }
    }

    /// Read buffers of 512 bytes at first (an upgrade request or a frame fits), growing up to 64 KB while reads fill them.
    static let readBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .realtime:
                return  // the socket's handlers serve it on its event loop
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
        } catch let error as ChannelError where error == .inputClosed {
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
    /// The client's address, for the per-address limit.
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
    init?(_ head: HTTPRequestHead, channel: any Channel) {
        let uri = URI(head.uri)
        guard RealtimeGateway.paths.contains(uri.path), let serializer = PhoenixSerializer(vsn: uri.queryParameters.get("vsn")) else { return nil }
        self.serializer = serializer
        self.apiKey = head.headers.first(name: "x-api-key") ?? uri.queryParameters.get("apikey") ?? head.headers.first(name: "apikey")
        self.address = channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
