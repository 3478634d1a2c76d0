import Foundation

/// Where the SDK is in its connection lifecycle.
public enum ConnectionStatus: Sendable, Equatable, CustomStringConvertible {
    /// Opening the first socket.
    case connecting
    /// The socket is open and heartbeats are answered; channels are (re)joined.
    case connected
    /// The socket dropped; waiting before attempt number `attempt`.
    case reconnecting(attempt: Int)
    /// Realtime keeps failing: counts come from polling `GET /api/events/{id}/availability` while reconnects go on.
    case polling
    /// Not connected and not trying (stopped, or no subscription left).
    case disconnected(reason: String)

    public var description: String {
        switch self {
        case .connecting: "connecting"
        case .connected: "connected"
        case .reconnecting(let attempt): "reconnecting (attempt \(attempt))"
        case .polling: "polling"
        case .disconnected(let reason): "disconnected: \(reason)"
        }
    }
}

/// Problems the SDK reports on ``TicketAvailabilityClient/errors()`` and skips; none of them stops the client.
public enum TicketAvailabilityError: Error, Sendable, Equatable, CustomStringConvertible {
    /// More distinct events than ``TicketAvailabilityClient/Configuration/maxSubscriptions`` were subscribed.
    case subscriptionLimitReached(limit: Int)
    /// The client was shut down.
    case shutDown
    /// A frame that is not a Phoenix message.
    case malformedFrame(String)
    /// A message whose payload does not have the expected shape.
    case invalidPayload(topic: String, event: String, reason: String)
    /// The server refused to join an event's channel.
    case joinRefused(event: UUID, reason: String)
    /// The server reported a problem with a channel (a `system` error or `phx_error`).
    case channelError(event: UUID, reason: String)
    /// No heartbeat reply came in time; the socket was considered dead.
    case heartbeatTimeout
    /// The socket could not be opened, or ended.
    case connectionFailed(String)
    /// Loading `GET /api/events/{id}/availability` failed.
    case snapshotFailed(event: UUID, reason: String)

    public var description: String {
        switch self {
        case .subscriptionLimitReached(let limit): "subscription limit reached: at most \(limit) events per client"
        case .shutDown: "the client was shut down"
        case .malformedFrame(let reason): "malformed frame skipped: \(reason)"
        case .invalidPayload(let topic, let event, let reason): "invalid \(event) payload on \(topic) skipped: \(reason)"
        case .joinRefused(let event, let reason): "join of event \(event.lowercased) refused: \(reason)"
        case .channelError(let event, let reason): "channel error on event \(event.lowercased): \(reason)"
        case .heartbeatTimeout: "no heartbeat reply in time; reconnecting"
        case .connectionFailed(let reason): "connection failed: \(reason)"
        case .snapshotFailed(let event, let reason): "loading the snapshot of event \(event.lowercased) failed: \(reason)"
        }
    }
}

/// Why ``TicketAvailabilityClient/reserve(event:ticketType:quantity:idempotencyKey:)`` failed. The optimistic hold
/// has been rolled back when one of these is thrown.
public enum ReservationError: Error, Sendable, Equatable {
    /// 409 `sold_out`: nothing is left; `available` is the server's count.
    case soldOut(available: Int)
    /// 409 `insufficient_availability`: fewer than asked are left.
    case insufficientAvailability(available: Int, message: String)
    /// Any other refusal (401, 403, 404, 422, 5xx…) with the server's error code and message.
    case rejected(status: Int, code: String, message: String)
    /// The client shut down (or the caller was cancelled) before the request could be sent.
    case cancelled
}

extension TicketAvailabilityClient {
    /// How a client connects and behaves. The defaults suit an app; tests shorten or inject what they need.
    public struct Configuration: Sendable {
        /// The server, e.g. `http://127.0.0.1:8080`; the socket is `ws://…/realtime/v1/websocket`.
        public var baseURL: URL
        /// The API key / JWT sent as `apikey` and `access_token`, and as the bearer token of reservations.
        public var accessToken: String
        /// At most this many distinct events at once (the server allows 100 channels per socket).
        public var maxSubscriptions = 100
        public var heartbeatInterval: Duration = .seconds(25)
        /// How long a heartbeat may go unanswered before the socket is treated as dead.
        public var heartbeatTimeout: Duration = .seconds(10)
        /// How long opening a socket may take.
        public var connectTimeout: Duration = .seconds(10)
        /// The first reconnect delay; it doubles per attempt up to `maxReconnectDelay`.
        public var reconnectBaseDelay: Duration = .seconds(1)
        public var maxReconnectDelay: Duration = .seconds(30)
        /// Each delay is shortened by up to this fraction at random, so many clients do not reconnect in step.
        public var reconnectJitter = 0.5
        /// After this many failed attempts in a row, poll the availability endpoint until realtime returns.
        public var pollAfterFailures = 3
        public var pollInterval: Duration = .seconds(5)
        /// At most one update per event is delivered per interval; changes in between are folded into it.
        public var coalescingInterval: Duration = .milliseconds(100)
        /// Ask for the current rows in the join (`config.marquee.snapshot`); otherwise load them over HTTP.
        public var joinSnapshot = true
        /// A source of uniform randoms in 0..<1 for the jitter (injectable for tests).
        public var random: @Sendable () -> Double = { Double.random(in: 0..<1) }

        public init(baseURL: URL, accessToken: String) {
            self.baseURL = baseURL
            self.accessToken = accessToken
        }

        var backoff: Backoff {
            Backoff(base: reconnectBaseDelay, cap: maxReconnectDelay, jitter: reconnectJitter)
        }

        static let queryValueAllowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))

        func socketURL(token: String) -> String {
            var text = baseURL.absoluteString
            while text.hasSuffix("/") { text.removeLast() }
            if text.hasPrefix("https://") {
                text = "wss://" + text.dropFirst("https://".count)
            } else if text.hasPrefix("http://") {
                text = "ws://" + text.dropFirst("http://".count)
            }
            let key = token.addingPercentEncoding(withAllowedCharacters: Self.queryValueAllowed) ?? token
            return "\(text)/realtime/v1/websocket?apikey=\(key)&vsn=2.0.0"
        }
    }
}
