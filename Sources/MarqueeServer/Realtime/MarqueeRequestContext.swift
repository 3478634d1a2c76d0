import Hummingbird
import NIOCore

/// The request context of every route: the client's address, for per-IP limits.
public struct MarqueeRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// The connection's channel.
    public let channel: any Channel

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.channel = source.channel
    }
}
