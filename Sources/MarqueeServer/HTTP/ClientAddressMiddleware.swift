import HTTPTypes
import Hummingbird
import MarqueeCore

/// Puts the client's address on the request's logger (`client`): the TCP peer, or behind a trusted proxy the address
/// it forwarded for (``TrustedProxies``). Only parsed addresses are logged, never the header's text.
struct ClientAddressMiddleware<Context: RequestContext & RemoteAddressRequestContext>: RouterMiddleware {
    let trustedProxies: TrustedProxies

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let peer = context.remoteAddress?.ipAddress.flatMap({ IPAddress($0) }) {
            let client = trustedProxies.clientAddress(
                peer: peer, forwardedFor: request.headers[values: .xForwardedFor], forwarded: request.headers[values: .forwarded])
            context.logger[metadataKey: "client"] = "\(client)"
        }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let forwarded = HTTPField.Name("Forwarded")!
}
