import HTTPTypes
import NIOCore
import NIOHTTP1

/// Guards the HTTP side of one connection, right after NIO's request decoder and upgrade handler:
///
/// - **a late first request head** (``ConnectionGuard`` times it) is answered `408`;
/// - **requests the parser refuses** are answered and the connection closed: `431` for header fields over the
///   decoder's limit, `501` for a well-formed request line with a method the server does not know, `400` for
///   everything else (a broken request line, `Content-Length` with `Transfer-Encoding`, bad chunks). Each answer is
///   the API's JSON error with `Connection: close`. When responses to earlier requests are still being written the
///   answer waits for them (it answers the request that failed), so this holds for the first request and for any
///   later one on a keep-alive connection;
/// - **whether a request is in progress**, for the budget: a connection is idle (may be shed) between a response's end
///   and the next head.
///
/// Removed when the connection upgrades to a WebSocket.
final class HTTPRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let connection: ConnectionBudget.Connection?
    private let sniffer: RequestLineSniffer
    private let metrics: ConnectionMetrics?
    /// A head was read and its end not yet.
    private var requestOpen = false
    /// Requests read whose responses have not ended.
    private var awaitingResponses = 0
    /// A response's head is written and its end not yet.
    private var responseOpen = false
    /// The answer to a request that failed while responses before it were still being written.
    private var pendingError: APIError?
    /// An error answer went out: the connection is closing, and nothing else is read or written.
    private var answered = false

    init(connection: ConnectionBudget.Connection?, sniffer: RequestLineSniffer, metrics: ConnectionMetrics?) {
        self.connection = connection
        self.sniffer = sniffer
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch Self.unwrapInboundIn(data) {
        case .head:
            sniffer.sawHead = true
            requestOpen = true
            awaitingResponses += 1
            connection?.setBusy(true)
        case .body:
            break
        case .end:
            requestOpen = false
            sniffer.reset()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !answered else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let part = Self.unwrapOutboundIn(data)
        var ended = false
        switch part {
        case .head(let head) where head.status.code < 200:
            break  // informational (100 Continue): the response itself follows
        case .head:
            responseOpen = true
        case .body:
            break
        case .end:
            responseOpen = false
            awaitingResponses = max(0, awaitingResponses - 1)
            ended = true
        }
        context.write(data, promise: promise)
        guard ended else { return }
        connection?.touch()
        guard awaitingResponses == 0 else { return }
        connection?.setBusy(false)
        if let error = pendingError {
            pendingError = nil
            answer(context: context, error)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parseError = error as? HTTPParserError {
            let answer = Self.answer(to: parseError, sniffer: sniffer)
            if requestOpen {
                // the request being read failed (its body): answer it unless its response has begun
                requestOpen = false
                if responseOpen {
                    answered = true
                    context.close(promise: nil)
                } else {
                    self.answer(context: context, answer)
                }
            } else if awaitingResponses == 0, !responseOpen {
                self.answer(context: context, answer)
            } else if pendingError == nil {
                pendingError = answer
            }
            return
        }
        if error is ByteToMessageDecoderError { return }  // bytes after a parse error: the connection is closing
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let late = event as? ConnectionGuard.RequestHeadTimedOut else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !sniffer.sawHead else { return }
        let seconds = Double(late.timeout.nanoseconds) / 1e9
        answer(
            context: context,
            APIError(.requestTimeout, "request_timeout", "the request head did not arrive within \(seconds.formatted) s; send it at once"))
    }

    /// Writes `error` as the response, then closes the connection.
    private func answer(context: ChannelHandlerContext, _ error: APIError) {
        guard !answered else { return }
        answered = true
        metrics?.malformedRequest(status: error.status.code)
        let body = context.channel.allocator.buffer(string: error.body)
        let headers = HTTPHeaders([
            ("Content-Type", "application/json; charset=utf-8"), ("Content-Length", "\(body.readableBytes)"), ("Connection", "close"),
        ])
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: error.status.code), headers: headers)
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// The answer to a request the parser refused.
    static func answer(to error: HTTPParserError, sniffer: RequestLineSniffer) -> APIError {
        switch error {
        case .headerOverflow where sniffer.requestLineOverflowed:
            return APIError(.uriTooLong, "uri_too_long", "the request line is longer than the server accepts (80 KB)")
        case .headerOverflow:
            return APIError(
                .requestHeaderFieldsTooLarge, "headers_too_large", "the request's header fields are larger than the server accepts (80 KB in all)")
        case .invalidMethod where sniffer.hasRequestLineShape:
            return APIError(.notImplemented, "method_not_implemented", "the server does not implement this request method")
        case .unexpectedContentLength, .invalidContentLength:
            // the parser says this both of a Content-Length that is not a number and of one next to Transfer-Encoding
            return APIError(
                .badRequest, "invalid_framing",
                "the request's Content-Length is not a number of bytes, or it comes with Transfer-Encoding (a request carries one or the other)")
        case .invalidChunkSize:
            return APIError(.badRequest, "malformed_body", "a chunk of the request body has an invalid size")
        case .invalidMethod, .invalidURL, .invalidVersion, .lfExpected, .invalidConstant:
            return APIError(.badRequest, "malformed_request", "the request line is malformed; expected METHOD TARGET HTTP/1.1")
        case .invalidHeaderToken, .invalidCharactersUsed:
            return APIError(.badRequest, "malformed_request", "a header field of the request is malformed")
        default:
            return APIError(.badRequest, "malformed_request", "the request could not be parsed as HTTP/1.1")
        }
    }
}

extension Double {
    /// `10`, `0.5`: a number of seconds as people write it.
    fileprivate var formatted: String {
        self == rounded() ? String(Int(self)) : String(self)
    }
}

@available(*, unavailable)
extension HTTPRequestGuard: Sendable {}
