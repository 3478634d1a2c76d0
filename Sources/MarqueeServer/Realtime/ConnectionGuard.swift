import NIOCore

/// The first handler of a connection that is not a WebSocket socket (yet):
///
/// - the connection's HTTP pipeline is built only when its first bytes arrive (`configure`), so a connection that
///   sends nothing costs this handler and a timer, not a parser, encoder and upgrader: an idle flood is cheap to hold,
///   to shed and to time out;
/// - **the first request head** must be complete within `headTimeout` of the accept, however slowly its bytes trickle
///   in: a connection that sent nothing by then is closed, one that sent part of a head is answered `408` by
///   ``HTTPRequestGuard`` (told with ``RequestHeadTimedOut``);
/// - notes when the connection last read bytes, for the budget's choice of whom to shed, and shows the start of each
///   request to its ``RequestLineSniffer``.
///
/// Removed when the connection upgrades.
final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Fired down the pipeline when the first request head is late and part of it has arrived.
    struct RequestHeadTimedOut {
        let timeout: TimeAmount
    }

    private let connection: ConnectionBudget.Connection
    private let sniffer: RequestLineSniffer
    private let headTimeout: TimeAmount?
    private let metrics: ConnectionMetrics?
    /// Builds the rest of the pipeline, after this handler; called once, on the first read.
    private var configure: ((ChannelHandlerContext) throws -> Void)?
    /// Fails the connection's upgrade result when it closes before it was configured.
    private var unconfigured: ((any Error) -> Void)?
    private var headTimer: Scheduled<Void>?

    init(
        connection: ConnectionBudget.Connection, sniffer: RequestLineSniffer, headTimeout: TimeAmount?, metrics: ConnectionMetrics?,
        configure: @escaping (ChannelHandlerContext) throws -> Void, unconfigured: @escaping (any Error) -> Void
    ) {
        self.connection = connection
        self.sniffer = sniffer
        self.headTimeout = headTimeout
        self.metrics = metrics
        self.configure = configure
        self.unconfigured = unconfigured
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let headTimeout else { return }
        headTimer = context.eventLoop.assumeIsolated().scheduleTask(in: headTimeout) { [self] in
            headTimer = nil
            headTimedOut(context: context, after: headTimeout)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headTimer?.cancel()
        headTimer = nil
        unconfigured?(ChannelError.inputClosed)
        unconfigured = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.touch()
        if let configure {
            self.configure = nil
            unconfigured = nil
            do {
                try configure(context)
            } catch {
                context.close(promise: nil)
                return
            }
        }
        if sniffer.isCapturing { sniffer.capture(Self.unwrapInboundIn(data)) }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        unconfigured?(ChannelError.inputClosed)
        unconfigured = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // the server is shutting down: a connection that has not sent a request has nothing to finish (the others are
        // closed by Hummingbird's connection handler once their response is written)
        if event is ChannelShouldQuiesceEvent, !sniffer.sawHead {
            context.close(promise: nil)
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed, configure != nil {
            context.close(promise: nil)  // the client is done before it sent anything
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func headTimedOut(context: ChannelHandlerContext, after timeout: TimeAmount) {
        guard !sniffer.sawHead, context.channel.isActive else { return }
        metrics?.headTimeouts.increment()
        if configure != nil || !sniffer.sawBytes {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(RequestHeadTimedOut(timeout: timeout))
        }
    }
}

@available(*, unavailable)
extension ConnectionGuard: Sendable {}
