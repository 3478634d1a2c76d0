import Foundation
import Logging
import MarqueeCore
import Synchronization

/// Keeps a live, correct picture of events' ticket availability over one realtime socket, whatever the network does.
///
/// - ``subscribe(event:)`` returns an ``AvailabilitySubscription`` (an `AsyncSequence` of ``AvailabilitySnapshot``s).
///   Subscriptions to the same event share one channel; the channel is left when the last handle goes away.
/// - The socket heartbeats, detects dead connections, reconnects with capped, jittered exponential backoff, and
///   rejoins every channel with its bindings; each (re)join reloads the snapshot and rows are applied by `version`.
/// - When realtime keeps failing it polls `GET /api/events/{id}/availability` and returns to realtime when it can.
/// - ``reserve(event:ticketType:quantity:idempotencyKey:)`` shows holds optimistically and queues them while offline.
public actor TicketAvailabilityClient {
    public let configuration: Configuration
    let transport: any RealtimeTransport
    let api: MarqueeAPI
    let clock: any Clock<Duration>
    let logger: Logger

    var table: ChannelTable
    var accessToken: String
    var status: ConnectionStatus = .disconnected(reason: "not started")
    var statusObservers: [Int: AsyncStream<ConnectionStatus>.Continuation] = [:]
    var errorObservers: [Int: AsyncStream<TicketAvailabilityError>.Continuation] = [:]
    var subscribers: [UUID: [Int: AsyncStream<AvailabilitySnapshot>.Continuation]] = [:]
    var coalescers: [UUID: Coalescer] = [:]
    var coalescingTimers: [UUID: Task<Void, Never>] = [:]
    var rejoinTimers: [UUID: Task<Void, Never>] = [:]
    var nextID = 0
    var runTask: Task<Void, Never>?
    var connectTimer: Task<Void, Never>?
    var link: RealtimeLink?
    var sessionID = 0
    var heartbeat = HeartbeatMachine()
    var sessionHealthy = false
    var isShutDown = false
    var holds: [Int: Hold] = [:]
    var queue: [QueuedReservation] = []
    var flushing = false
    /// The queued reservation being sent now (it can no longer be withdrawn).
    var inFlight: Int?
    /// Reservations whose caller was cancelled while they were being sent.
    var withdrawn: Set<Int> = []
    /// How many pictures were handed to subscribers (for tests of coalescing).
    var deliveries = 0

    /// - Parameters:
    ///   - transport: the realtime socket; ``WebSocketTransport`` by default, ``InMemoryTransport`` in tests.
    ///   - http: REST calls; ``URLSessionHTTPTransport`` by default.
    ///   - clock: drives heartbeats, backoff, coalescing and polling; a ``ManualClock`` in tests.
    public init(
        configuration: Configuration, transport: any RealtimeTransport = WebSocketTransport(),
        http: any HTTPTransport = URLSessionHTTPTransport(), clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "TicketAvailability")
    ) {
        self.configuration = configuration
        self.transport = transport
        self.api = MarqueeAPI(baseURL: configuration.baseURL, http: http)
        self.clock = clock
        self.logger = logger
        self.accessToken = configuration.accessToken
        self.table = ChannelTable(maxChannels: configuration.maxSubscriptions, joinSnapshot: configuration.joinSnapshot)
    }

    // MARK: - Public API

    /// Follows `event`: the handle yields the event's picture whenever it changes (latest wins, at most one update per
    /// ``Configuration/coalescingInterval``). Starts the connection if needed.
    /// - Throws: ``TicketAvailabilityError/subscriptionLimitReached(limit:)`` past ``Configuration/maxSubscriptions``
    ///   distinct events, ``TicketAvailabilityError/shutDown`` after ``shutdown()``.
    public func subscribe(event: UUID) async throws -> AvailabilitySubscription {
        guard !isShutDown else { throw TicketAvailabilityError.shutDown }
        nextID += 1
        let id = nextID
        let actions: [ChannelTable.Action]
        switch table.add(handle: id, event: event, connected: link != nil, token: accessToken) {
        case .limitReached: throw TicketAvailabilityError.subscriptionLimitReached(limit: configuration.maxSubscriptions)
        case .added(let result): actions = result
        }
        let (stream, continuation) = AsyncStream.makeStream(of: AvailabilitySnapshot.self, bufferingPolicy: .bufferingNewest(1))
        subscribers[event, default: [:]][id] = continuation
        if let current = picture(event), !current.ticketTypes.isEmpty { continuation.yield(current) }
        continuation.onTermination = { [weak self] _ in
            Task { await self?.release(handle: id, event: event) }
        }
        ensureRunning()
        await perform(actions)
        return AvailabilitySubscription(event: event, stream: stream, continuation: continuation)
    }

    /// The current picture of a subscribed event (with optimistic holds), or nil.
    public func snapshot(event: UUID) -> AvailabilitySnapshot? { picture(event) }

    /// The current connection status.
    public var connectionStatus: ConnectionStatus { status }

    /// Events with an open channel (subscribed by at least one live handle).
    public var subscribedEvents: Set<UUID> { Set(table.channels.keys) }

    /// The connection status now and at every change.
    public func statusUpdates() -> AsyncStream<ConnectionStatus> {
        let (stream, continuation) = AsyncStream.makeStream(of: ConnectionStatus.self, bufferingPolicy: .bufferingNewest(64))
        nextID += 1
        let id = nextID
        statusObservers[id] = continuation
        continuation.yield(status)
        continuation.onTermination = { [weak self] _ in Task { await self?.removeStatusObserver(id) } }
        return stream
    }

    /// Problems that were reported and skipped (malformed frames, refused joins, failed connections…).
    public func errors() -> AsyncStream<TicketAvailabilityError> {
        let (stream, continuation) = AsyncStream.makeStream(of: TicketAvailabilityError.self, bufferingPolicy: .bufferingNewest(256))
        nextID += 1
        let id = nextID
        errorObservers[id] = continuation
        continuation.onTermination = { [weak self] _ in Task { await self?.removeErrorObserver(id) } }
        return stream
    }

    /// Replaces the token: sent as `access_token` to every joined channel, used for later connections and requests.
    public func setAccessToken(_ token: String) async {
        accessToken = token
        await perform(table.refreshToken(token))
    }

    /// Stops for good: leaves the socket, ends every subscription and stream, fails queued reservations.
    public func shutdown() async {
        isShutDown = true
        let task = runTask
        runTask = nil
        task?.cancel()
        for (_, timer) in coalescingTimers { timer.cancel() }
        coalescingTimers = [:]
        for (_, timer) in rejoinTimers { timer.cancel() }
        rejoinTimers = [:]
        for (_, handles) in subscribers { for (_, continuation) in handles { continuation.finish() } }
        subscribers = [:]
        failQueue(.cancelled)
        await task?.value
        setStatus(.disconnected(reason: "shut down"))
        for (_, continuation) in statusObservers { continuation.finish() }
        for (_, continuation) in errorObservers { continuation.finish() }
        statusObservers = [:]
        errorObservers = [:]
    }

    // MARK: - Subscriptions

    func release(handle: Int, event: UUID) async {
        guard subscribers[event]?.removeValue(forKey: handle) != nil else { return }
        let (removed, actions) = table.remove(handle: handle, event: event, connected: link != nil)
        if removed {
            subscribers[event] = nil
            coalescers[event] = nil
            coalescingTimers.removeValue(forKey: event)?.cancel()
            rejoinTimers.removeValue(forKey: event)?.cancel()
        }
        await perform(actions)
        if table.channels.isEmpty && queue.isEmpty && !isShutDown, let task = runTask {
            runTask = nil
            task.cancel()
            setStatus(.disconnected(reason: "no subscriptions"))
        }
    }

    func removeStatusObserver(_ id: Int) { statusObservers[id] = nil }
    func removeErrorObserver(_ id: Int) { errorObservers[id] = nil }

    func setStatus(_ new: ConnectionStatus) {
        guard new != status else { return }
        status = new
        logger.debug("connection status", metadata: ["status": "\(new)"])
        for (_, continuation) in statusObservers { continuation.yield(new) }
    }

    func report(_ error: TicketAvailabilityError) {
        logger.debug("skipped", metadata: ["problem": "\(error)"])
        for (_, continuation) in errorObservers { continuation.yield(error) }
    }

    func perform(_ actions: [ChannelTable.Action]) async {
        for action in actions {
            switch action {
            case .send(let message):
                do { try await send(message) } catch { logger.debug("send failed", metadata: ["error": "\(error)"]) }
            case .changed(let event):
                noteChanged(event)
            case .joined(let event):
                sessionHealthy = true
                if !configuration.joinSnapshot { Task { await self.loadSnapshot(event) } }
                startFlush()
            case .report(let error):
                report(error)
            case .rejoinLater(let event, let attempt):
                scheduleRejoin(event, attempt: attempt)
            }
        }
    }

    private func scheduleRejoin(_ event: UUID, attempt: Int) {
        let delay = configuration.backoff.delay(attempt: attempt, random: configuration.random())
        let clock = self.clock
        let session = sessionID
        rejoinTimers[event]?.cancel()
        rejoinTimers[event] = Task { [weak self] in
            do { try await clock.sleep(for: delay) } catch { return }
            await self?.rejoinTimerFired(event, session: session)
        }
    }

    private func rejoinTimerFired(_ event: UUID, session: Int) async {
        rejoinTimers[event] = nil
        // a new session rejoins every channel by itself
        guard session == sessionID else { return }
        await perform(table.rejoin(event, connected: link != nil, token: accessToken))
    }

    func send(_ message: PhoenixMessage) async throws {
        guard let link else { throw TicketAvailabilityError.connectionFailed("not connected") }
        try await link.send(PhoenixSerializer.v2.encode(message))
    }

    // MARK: - Delivery (coalesced)

    func noteChanged(_ event: UUID) {
        guard configuration.coalescingInterval > .zero else { return deliver(event) }
        var coalescer = coalescers[event] ?? Coalescer()
        let action = coalescer.changed()
        coalescers[event] = coalescer
        if action == .deliverAndStartTimer { deliverAndStartTimer(event) }
    }

    private func deliverAndStartTimer(_ event: UUID) {
        deliver(event)
        let clock = self.clock
        let interval = configuration.coalescingInterval
        coalescingTimers[event] = Task { [weak self] in
            do { try await clock.sleep(for: interval) } catch { return }
            await self?.coalescingTimerFired(event)
        }
    }

    private func coalescingTimerFired(_ event: UUID) {
        guard var coalescer = coalescers[event] else { return }
        let action = coalescer.timerFired()
        coalescers[event] = coalescer
        if action == .deliverAndStartTimer { deliverAndStartTimer(event) } else { coalescingTimers[event] = nil }
    }

    /// Sends the current picture to every handle of `event`.
    func deliver(_ event: UUID) {
        pruneSettledHolds(event)
        guard let current = picture(event), let handles = subscribers[event] else { return }
        deliveries += 1
        for (_, continuation) in handles { continuation.yield(current) }
    }

    // MARK: - Snapshots and polling

    func loadSnapshot(_ event: UUID) async {
        do {
            let snapshot = try await api.availability(event: event)
            if table.apply(snapshot) { noteChanged(event) }
        } catch {
            report(.snapshotFailed(event: event, reason: "\(error)"))
        }
    }

    /// Loads every subscribed event's snapshot once; returns whether the server answered.
    func pollOnce() async -> Bool {
        var reached = false
        for event in table.channels.keys.sorted(by: { $0.uuidString < $1.uuidString }) {
            do {
                let snapshot = try await api.availability(event: event)
                reached = true
                if table.apply(snapshot) { noteChanged(event) }
            } catch {
                report(.snapshotFailed(event: event, reason: "\(error)"))
            }
        }
        if reached { startFlush() }
        return reached
    }
}
