import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on 127.0.0.1 (a port of its own) in front of a live server, which can inject network faults:
/// cut every connection, stall all traffic while keeping the sockets open, and refuse new connections.
final class FaultProxy: Sendable {
    /// The port the proxy listens on.
    let port: Int
    private let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    /// Open (true) while bytes flow.
    private let gate = Awaitable(true)
    private let state: Mutex<State>
    private let acceptLoop = Mutex<Task<Void, Never>?>(nil)

    private struct State {
        var targetPort: Int
        var refusing = false
        var nextID = 0
        /// Every proxied connection: (client side, server side).
        var connections: [Int: (any Channel, any Channel)] = [:]
        /// Every socket the proxy has open, on either side, from the moment it exists until it is closed.
        var sockets: [ObjectIdentifier: any Channel] = [:]
        var accepted = 0
        var refused = 0
        /// Connections whose client sent a WebSocket close frame while traffic was stalled.
        var closesHeldBack: Set<Int> = []
    }

    private init(port: Int, targetPort: Int, server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>) {
        self.port = port
        self.server = server
        self.state = Mutex(State(targetPort: targetPort))
    }

    /// Starts a proxy forwarding to 127.0.0.1:`targetPort`.
    static func start(targetPort: Int) async throws -> FaultProxy {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        guard let port = server.channel.localAddress?.port else { throw TestFailure("the proxy has no port") }
        let proxy = FaultProxy(port: port, targetPort: targetPort, server: server)
        let task = Task { await proxy.acceptConnections() }
        proxy.acceptLoop.withLock { $0 = task }
        return proxy
    }

    // MARK: - Faults

    /// Closes every current connection, on both sides.
    func cutAll() {
        let sockets = state.withLock { state in Array(state.sockets.values) }
        for socket in sockets { socket.close(promise: nil) }
    }

    /// Remembers `channel` until it closes, so that a cut reaches it whatever its connection is doing.
    private func track(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        state.withLock { $0.sockets[key] = channel }
        channel.closeFuture.whenComplete { _ in _ = self.state.withLock { $0.sockets.removeValue(forKey: key) } }
    }

    /// Stops forwarding bytes in both directions, on current and new connections; the sockets stay open.
    func stall() { gate.update { $0 = false } }

    /// Forwards again, starting with whatever was held back.
    func resume() { gate.update { $0 = true } }

    /// New connections go to 127.0.0.1:`port` from now on (a restarted server).
    func retarget(port: Int) { state.withLock { $0.targetPort = port } }

    /// New connections are accepted and closed at once (current ones are untouched) while `refusing`.
    func setRefusing(_ refusing: Bool) { state.withLock { $0.refusing = refusing } }

    var openConnections: Int { state.withLock { $0.connections.count } }
    /// Sockets still open on either side.
    var openSockets: Int { state.withLock { $0.sockets.count } }
    var acceptedConnections: Int { state.withLock { $0.accepted } }
    var closesHeldBackCount: Int { state.withLock { $0.closesHeldBack.count } }
    var refusedConnections: Int { state.withLock { $0.refused } }

    /// Closes the listener and every connection, and waits for the proxy's tasks to end.
    func shutdown() async {
        resume()
        setRefusing(true)
        try? await server.channel.close()
        cutAll()
        let task = acceptLoop.withLock { $0 }
        await task?.value
    }

    // MARK: - Forwarding

    private func acceptConnections() async {
        do {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } catch {
            // the listener was closed
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        track(connection.channel)
        let (refuse, targetPort) = state.withLock { state in
            if state.refusing { state.refused += 1 } else { state.accepted += 1 }
            return (state.refusing, state.targetPort)
        }
        if refuse {
            try? await connection.channel.close()
            return
        }
        let upstream: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            upstream = try await ClientBootstrap(group: connection.channel.eventLoop)
                .connect(host: "127.0.0.1", port: targetPort) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            try? await connection.channel.close()
            return
        }
        track(upstream.channel)
        let id = state.withLock { state in
            state.nextID += 1
            state.connections[state.nextID] = (connection.channel, upstream.channel)
            return state.nextID
        }
        defer { _ = state.withLock { $0.connections.removeValue(forKey: id) } }
        let gate = self.gate
        do {
            try await connection.executeThenClose { clientIn, clientOut in
                try await upstream.executeThenClose { serverIn, serverOut in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            try await Self.pump(clientIn, to: serverOut, gate: gate) { bytes in
                                // a WebSocket close frame (FIN + opcode 8) the client sent while traffic was stalled
                                if !gate.value, bytes.readableBytesView.first == 0x88 {
                                    _ = self.state.withLock { $0.closesHeldBack.insert(id) }
                                }
                            }
                        }
                        group.addTask { try await Self.pump(serverIn, to: clientOut, gate: gate) { _ in } }
                        defer { group.cancelAll() }
                        try await group.next()
                    }
                }
            }
        } catch {
            // one side failed or was cut: both are closed by executeThenClose
        }
        connection.channel.close(promise: nil)
        upstream.channel.close(promise: nil)
    }

    /// Forwards `input` to `output`, holding bytes back while the gate is closed (and reading on meanwhile).
    private static func pump(
        _ input: NIOAsyncChannelInboundStream<ByteBuffer>, to output: NIOAsyncChannelOutboundWriter<ByteBuffer>, gate: Awaitable<Bool>,
        observe: @escaping @Sendable (ByteBuffer) -> Void
    ) async throws {
        let (held, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await bytes in input {
                        observe(bytes)
                        continuation.yield(bytes)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            defer { group.cancelAll() }
            for try await bytes in held {
                await gate.wait { $0 }
                try Task.checkCancellation()
                try await output.write(bytes)
            }
        }
    }
}
