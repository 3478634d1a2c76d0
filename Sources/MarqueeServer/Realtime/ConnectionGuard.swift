import NIOCore

/// The first handler of a connection that is not a WebSocket socket (yet): notes when it last read bytes, for the
/// budget's choice of whom to shed, and shows the start of each request to its ``RequestLineSniffer``. Removed when
/// the connection upgrades.
final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let connection: ConnectionBudget.Connection
    private let sniffer: RequestLineSniffer

    init(connection: ConnectionBudget.Connection, sniffer: RequestLineSniffer) {
        self.connection = connection
        self.sniffer = sniffer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.touch()
        if sniffer.isCapturing { sniffer.capture(Self.unwrapInboundIn(data)) }
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension ConnectionGuard: Sendable {}
