import MarqueeCore
import NIOCore
import Synchronization

/// The server's one budget of open TCP connections, HTTP and WebSocket alike: at most ``Limits/maxConnections`` in
/// all (kept below the open-file limit, see ``FileLimit``) and ``Limits/maxPerAddress`` from one peer address (trusted
/// proxies are exempt from the latter).
///
/// When the budget is full, a new connection first makes room by shedding connections that never became WebSocket
/// sockets and have no request in progress, those idle longest first. Finding them is a scan of those connections, so
/// one scan sheds a batch (``Limits/shedBatch``): a flood costs a scan per batch of accepts, not one per accept. A
/// connection is refused only when nothing can be shed. WebSocket sockets are never shed.
///
/// Counts are kept under one lock, taken once when a connection opens and once when it closes (and when it upgrades);
/// the scan runs outside of it, on a copy of the registry.
public final class ConnectionBudget: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maxConnections: Int
        public var maxPerAddress: Int
        /// How many idle connections one scan sheds at most; nil: a 64th of ``maxConnections`` (1 to 1024).
        public var shedBatch: Int?

        public init(maxConnections: Int = Int.max, maxPerAddress: Int = Int.max, shedBatch: Int? = nil) {
            self.maxConnections = maxConnections
            self.maxPerAddress = maxPerAddress
            self.shedBatch = shedBatch
        }

        var batch: Int { max(1, shedBatch ?? min(1024, max(1, maxConnections / 64))) }
    }

    /// One counted connection. Its activity is stored atomically by its own handlers and read by a scan.
    public final class Connection: Sendable {
        let id: Int
        public let address: IPAddress
        let channel: any Channel
        /// Uptime in nanoseconds (``NIODeadline``) when the connection last read bytes or finished a response.
        private let lastActivity: Atomic<UInt64>
        /// Whether a request has been read and its response is not finished yet.
        private let busy = Atomic<Bool>(false)

        init(id: Int, address: IPAddress, channel: any Channel, now: NIODeadline) {
            self.id = id
            self.address = address
            self.channel = channel
            self.lastActivity = Atomic(now.uptimeNanoseconds)
        }

        func touch(_ now: NIODeadline = .now()) { lastActivity.store(now.uptimeNanoseconds, ordering: .relaxed) }

        func setBusy(_ value: Bool) { busy.store(value, ordering: .relaxed) }

        var isBusy: Bool { busy.load(ordering: .relaxed) }
        var lastActive: UInt64 { lastActivity.load(ordering: .relaxed) }
    }

    public enum Refusal: Sendable, Hashable {
        /// The peer address holds ``Limits/maxPerAddress`` connections already.
        case perAddress
        /// The budget is full of sockets and busy connections.
        case full
    }

    public enum Admission: Sendable {
        case admitted(Connection)
        case refused(Refusal)
    }

    private struct State {
        var total = 0
        var perAddress: [IPAddress: Int] = [:]
        /// Connections that have not upgraded: candidates for shedding.
        var http: [Int: Connection] = [:]
        /// Connections that are WebSocket sockets now.
        var sockets = Set<Int>()
        var nextID = 0
        /// When a scan last found nothing to shed: the next one waits a little (busy connections finish in time).
        var fruitlessScanAt: UInt64?
        /// Refusals not logged yet, and when each kind was last logged.
        var unlogged: [Refusal: Int] = [:]
        var loggedAt: [Refusal: UInt64] = [:]

        mutating func insert(address: IPAddress, channel: any Channel, now: NIODeadline) -> Connection {
            nextID &+= 1
            let connection = Connection(id: nextID, address: address, channel: channel, now: now)
            total += 1
            perAddress[address, default: 0] += 1
            http[connection.id] = connection
            return connection
        }

        /// Uncounts a connection that is counted; false when it was not (any more).
        mutating func remove(_ connection: Connection) -> Bool {
            guard http.removeValue(forKey: connection.id) != nil || sockets.remove(connection.id) != nil else { return false }
            total -= 1
            if let count = perAddress[connection.address], count > 1 {
                perAddress[connection.address] = count - 1
            } else {
                perAddress[connection.address] = nil
            }
            return true
        }
    }

    public let limits: Limits
    let metrics: ConnectionMetrics?
    private let state = Mutex(State())
    /// How long after a fruitless scan the next one may run.
    static let rescanDelay: UInt64 = 50_000_000

    public init(limits: Limits, metrics: ConnectionMetrics? = nil) {
        self.limits = limits
        self.metrics = metrics
    }

    /// No limits at all (tests that build a server channel by hand).
    public static var unlimited: ConnectionBudget { ConnectionBudget(limits: Limits()) }

    /// Counts a new connection from `address` (`exempt`: a trusted proxy, not held to the per-address cap), shedding
    /// idle connections when the budget is full; the shed ones are closed before this returns.
    public func admit(address: IPAddress, exempt: Bool, channel: any Channel, now: NIODeadline = .now()) -> Admission {
        enum Step {
            case done(Admission)
            case shed([Int: Connection])
        }
        let limits = self.limits
        var admission: Admission = .refused(.full)
        var shed: [Connection] = []
        // another loop's scan may take the same victims first: then look again (its room may be taken by then too)
        attempts: for _ in 0..<3 {
            let step = state.withLock { state -> Step in
                if !exempt, state.perAddress[address, default: 0] >= limits.maxPerAddress { return .done(.refused(.perAddress)) }
                if state.total < limits.maxConnections { return .done(.admitted(state.insert(address: address, channel: channel, now: now))) }
                if let last = state.fruitlessScanAt, now.uptimeNanoseconds &- last < Self.rescanDelay { return .done(.refused(.full)) }
                return .shed(state.http)  // a copy on write: the scan runs outside the lock
            }
            switch step {
            case .done(let result):
                admission = result
                break attempts
            case .shed(let candidates):
                let victims = Self.oldestIdle(candidates.values, count: limits.batch)
                let result = state.withLock { state -> Admission? in
                    for victim in victims where !victim.isBusy && state.remove(victim) { shed.append(victim) }
                    if victims.isEmpty { state.fruitlessScanAt = now.uptimeNanoseconds }
                    if !exempt, state.perAddress[address, default: 0] >= limits.maxPerAddress { return .refused(.perAddress) }
                    if state.total < limits.maxConnections { return .admitted(state.insert(address: address, channel: channel, now: now)) }
                    return victims.isEmpty ? .refused(.full) : nil
                }
                if let result {
                    admission = result
                    break attempts
                }
            }
        }
        for victim in shed { victim.channel.close(promise: nil) }
        if let metrics {
            if !shed.isEmpty { metrics.shed.increment(by: shed.count) }
            switch admission {
            case .admitted: metrics.open.set(count())
            case .refused(.perAddress): metrics.refusedPerAddress.increment()
            case .refused(.full): metrics.refusedFull.increment()
            }
        }
        return admission
    }

    /// The connection is a WebSocket socket from now on: it is never shed.
    public func upgraded(_ connection: Connection) {
        state.withLock { state in
            if state.http.removeValue(forKey: connection.id) != nil { state.sockets.insert(connection.id) }
        }
    }

    /// The connection has closed (a connection that was shed has been uncounted already).
    public func release(_ connection: Connection) {
        let total = state.withLock { state in state.remove(connection) ? state.total : nil }
        if let total { metrics?.open.set(total) }
    }

    /// Whether to log a refusal of this kind now (at most one line every 10 s per kind, so that a flood does not
    /// flood the log too): the number of refusals since the last line, or nil to stay quiet.
    func shouldLog(_ refusal: Refusal, now: NIODeadline = .now()) -> Int? {
        state.withLock { state in
            let count = state.unlogged[refusal, default: 0] + 1
            if let last = state.loggedAt[refusal], now.uptimeNanoseconds &- last < 10_000_000_000 {
                state.unlogged[refusal] = count
                return nil
            }
            state.loggedAt[refusal] = now.uptimeNanoseconds
            state.unlogged[refusal] = 0
            return count
        }
    }

    /// Open connections: in all, and from `address`.
    public func count(from address: IPAddress? = nil) -> Int {
        state.withLock { state in address.map { state.perAddress[$0] ?? 0 } ?? state.total }
    }

    /// Up to `count` connections with no request in progress, least recently active first.
    static func oldestIdle(_ candidates: some Sequence<Connection>, count: Int) -> [Connection] {
        var idle: [(UInt64, Connection)] = []
        for connection in candidates where !connection.isBusy { idle.append((connection.lastActive, connection)) }
        guard idle.count > count else { return idle.map(\.1) }
        // a partial selection would do; sorting a few thousand stamps outside the lock costs well under a millisecond
        idle.sort { $0.0 < $1.0 }
        return idle.prefix(count).map(\.1)
    }
}
