import Foundation
import MarqueeCore
import Synchronization

/// Whether a connection attempt reached its session before the connect timeout.
final class AttemptStart: Sendable {
    enum State { case waiting, started, timedOut }
    private let state = Mutex(State.waiting)

    /// Marks the session as started; false if the attempt already timed out.
    func start() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .started
            return true
        }
    }

    /// Marks the attempt as timed out; false if the session already started.
    func timeOut() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .timedOut
            return true
        }
    }
}

extension TicketAvailabilityClient {
    func ensureRunning() {
        guard runTask == nil, !isShutDown else { return }
        runTask = Task { await self.runLoop() }
    }

    /// Connect, run the session, back off, poll when realtime keeps failing; until cancelled.
    func runLoop() async {
        var attempt = 0
        setStatus(.connecting)
        while !Task.isCancelled {
            sessionHealthy = false
            await connectOnce()
            if Task.isCancelled { break }
            if sessionHealthy { attempt = 0 }
            attempt += 1
            let delay = configuration.backoff.delay(attempt: attempt, random: configuration.random())
            if attempt >= configuration.pollAfterFailures {
                setStatus(.polling)
                await pollWhileWaiting(delay)
            } else {
                setStatus(.reconnecting(attempt: attempt))
                do { try await clock.sleep(for: delay) } catch { break }
            }
        }
    }

    private func pollWhileWaiting(_ delay: Duration) async {
        let clock = self.clock
        let interval = configuration.pollInterval
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(for: delay) }
            group.addTask {
                while !Task.isCancelled {
                    _ = await self.pollOnce()
                    do { try await clock.sleep(for: interval) } catch { return }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// One connection attempt and, if it opens, its whole session. Returns as soon as the session ends or the attempt
    /// times out, without waiting for the transport to finish closing a dead socket.
    private func connectOnce() async {
        let url = configuration.socketURL(token: accessToken)
        let transport = self.transport
        let start = AttemptStart()
        let (outcomes, outcome) = AsyncStream.makeStream(of: Result<Void, any Error>.self, bufferingPolicy: .bufferingOldest(1))
        let attempt = Task {
            do {
                try await transport.run(url: url) { link in
                    guard start.start() else { throw CancellationError() }
                    do {
                        try await self.session(link)
                        outcome.yield(.success(()))
                    } catch {
                        outcome.yield(.failure(error))
                        throw error
                    }
                }
                outcome.yield(.success(()))
            } catch {
                outcome.yield(.failure(error))
            }
            outcome.finish()
        }
        let clock = self.clock
        let timeout = configuration.connectTimeout
        connectTimer = Task {
            do { try await clock.sleep(for: timeout) } catch { return }
            if start.timeOut() { outcome.yield(.failure(CancellationError())) }
        }
        let result = await withTaskCancellationHandler {
            var iterator = outcomes.makeAsyncIterator()
            return await iterator.next() ?? .failure(CancellationError())
        } onCancel: {
            attempt.cancel()
            outcome.finish()
        }
        // the socket is done with: the transport closes it in the background, except when the client stops (shutdown,
        // last subscription gone), which waits for the close (bounded by the transport's close timeout)
        attempt.cancel()
        connectTimer?.cancel()
        connectTimer = nil
        if Task.isCancelled {
            await attempt.value
            return
        }
        switch result {
        case .success:
            report(.connectionFailed("the connection ended"))
        case .failure(let error as TicketAvailabilityError):
            report(error == .heartbeatTimeout ? error : .connectionFailed("\(error)"))
        case .failure(is CancellationError):
            report(.connectionFailed("timed out opening the socket"))
        case .failure(let error):
            report(.connectionFailed("\(error)"))
        }
    }

    /// Runs one open socket: joins every channel, heartbeats, reads frames until it ends.
    func session(_ link: RealtimeLink) async throws {
        connectTimer?.cancel()
        connectTimer = nil
        sessionID += 1
        let id = sessionID
        self.link = link
        heartbeat.reset()
        setStatus(.connected)
        defer { sessionEnded(id) }
        await perform(table.connectionOpened(token: accessToken))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.heartbeatLoop(session: id) }
            group.addTask {
                for try await text in link.frames { await self.receive(text) }
                throw TicketAvailabilityError.connectionFailed("the server closed the connection")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func sessionEnded(_ id: Int) {
        guard id == sessionID else { return }
        link = nil
        heartbeat.reset()
        table.connectionClosed()
    }

    private func heartbeatLoop(session id: Int) async throws {
        while true {
            try await clock.sleep(for: configuration.heartbeatInterval)
            guard id == sessionID else { return }
            let ref = table.nextRef()
            heartbeat.sent(ref: ref)
            try await send(PhoenixMessage(ref: ref, topic: "phoenix", event: "heartbeat"))
            try await clock.sleep(for: configuration.heartbeatTimeout)
            if heartbeat.deadlinePassed(ref: ref) == .timedOut { throw TicketAvailabilityError.heartbeatTimeout }
        }
    }

    func receive(_ text: String) async {
        let message: PhoenixMessage
        do {
            message = try PhoenixSerializer.v2.decode(text)
        } catch {
            report(.malformedFrame(error.message))
            return
        }
        if message.topic == "phoenix" {
            if message.event == "phx_reply", heartbeat.replied(ref: message.ref) {
                sessionHealthy = true
                if !queue.isEmpty { startFlush() }
            }
            return
        }
        guard case .object = message.payload else {
            report(.invalidPayload(topic: message.topic, event: message.event, reason: "the payload is not an object"))
            return
        }
        await perform(table.receive(message, token: accessToken))
    }
}
