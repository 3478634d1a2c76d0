import Foundation
import Logging
import WSClient

/// One open realtime connection: send text frames, read text frames until it ends.
public struct RealtimeLink: Sendable {
    public let send: @Sendable (String) async throws -> Void
    public let frames: AsyncThrowingStream<String, any Error>

    public init(send: @escaping @Sendable (String) async throws -> Void, frames: AsyncThrowingStream<String, any Error>) {
        self.send = send
        self.frames = frames
    }
}

/// How the SDK reaches the server; tests use an in-memory transport, apps the WebSocket one.
public protocol RealtimeTransport: Sendable {
    /// Opens a connection to `url` and runs `session` on it; returns (or throws) when the connection ends.
    func run(url: String, session: @escaping @Sendable (RealtimeLink) async throws -> Void) async throws
}

/// The WebSocket transport, on swift-websocket's `WebSocketClient`.
public struct WebSocketTransport: RealtimeTransport {
    let logger: Logger
    let maxFrameSize: Int
    let closeTimeout: Duration

    /// - Parameters:
    ///   - maxFrameSize: the largest frame accepted from the server.
    ///   - closeTimeout: how long a closing socket waits for the server's close frame; a dead connection (the
    ///     reason most sockets are closed here) never sends one, so this stays short.
    public init(logger: Logger = Logger(label: "TicketAvailability"), maxFrameSize: Int = 1 << 22, closeTimeout: Duration = .seconds(1)) {
        self.logger = logger
        self.maxFrameSize = maxFrameSize
        self.closeTimeout = closeTimeout
    }

    public func run(url: String, session: @escaping @Sendable (RealtimeLink) async throws -> Void) async throws {
        let maxFrameSize = self.maxFrameSize
        let configuration = WebSocketClientConfiguration(maxFrameSize: maxFrameSize, closeTimeout: closeTimeout)
        try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, outbound, _ in
            let (frames, continuation) = AsyncThrowingStream<String, any Error>.makeStream()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        for try await message in inbound.messages(maxSize: maxFrameSize) {
                            if case .text(let text) = message { continuation.yield(text) }
                        }
                        continuation.finish()
                    } catch {
                        continuation.finish(throwing: error)
                    }
                }
                defer { group.cancelAll() }
                try await session(RealtimeLink(send: { try await outbound.write(.text($0)) }, frames: frames))
            }
        }
    }
}
