import MarqueeCore

/// The client's side of a logical replication stream once `START_REPLICATION … LOGICAL` has put the connection in
/// CopyBoth mode: a pure state machine (bytes and the time in, actions out), driven by ``StreamingChangeFeed``.
///
/// - XLogData (`w`) is handed on as pgoutput bytes (``Action/decode(start:_:)``).
/// - A primary keepalive (`k`) that asks for a reply is answered at once.
/// - Standby status updates (`r`) report as flushed only what the consumer said it handed on (``taken(_:)``):
///   at-least-once, a crash redelivers what was not confirmed. Between transactions a keepalive's position counts as
///   handed on too (everything before it was received and nothing is open), so the slot advances past WAL that carries
///   no published change. They go out `feedbackDelay` after a position moved, and at least every `statusInterval`
///   (at most half of `wal_sender_timeout`).
/// - A server that says nothing for `statusInterval` is asked for a reply; one that stays silent for `silenceLimit`
///   is given up (``Action/reconnect(_:)``): a cut that no packet reports would otherwise go unnoticed.
struct ReplicationStream: Sendable {
    struct Configuration: Sendable {
        /// The longest time between two status updates (PostgreSQL's `wal_receiver_status_interval` is 10 s).
        var statusInterval: Duration = .seconds(10)
        /// How long after the handed-on position moved the next status update goes out (updates in between coalesce).
        var feedbackDelay: Duration = .milliseconds(100)
        /// How long the server may stay silent, even when asked for a reply, before the stream is given up.
        var silenceLimit: Duration = .seconds(30)

        /// Status updates at least every half of `wal_sender_timeout` (0 turns the server's timeout off).
        mutating func fit(walSenderTimeout: Duration) {
            guard walSenderTimeout > .zero else { return }
            statusInterval = min(statusInterval, walSenderTimeout / 2)
            silenceLimit = max(statusInterval * 2, min(silenceLimit, walSenderTimeout * 2))
        }
    }

    enum Action: Sendable, Equatable {
        /// pgoutput bytes of one XLogData message, whose WAL starts at `start`.
        case decode(start: PgLSN, [UInt8])
        /// Bytes to send to the server (a standby status update).
        case send([UInt8])
        /// The stream is broken or silent: close it and connect again.
        case reconnect(String)
    }

    struct ProtocolError: Error, CustomStringConvertible {
        var description: String
    }

    let configuration: Configuration
    /// The newest WAL position the server said it sent (XLogData's and keepalives' end).
    private(set) var serverPosition: PgLSN = .invalid
    /// What the consumer handed on: reported to the server as flushed.
    private(set) var flushed: PgLSN
    /// What the server last heard from us as flushed.
    private(set) var reported: PgLSN = .invalid
    private(set) var lastStatus: ContinuousClock.Instant
    private(set) var lastReceived: ContinuousClock.Instant
    /// When a status update goes out because `flushed` moved.
    private var feedbackAt: ContinuousClock.Instant?
    /// A reply was asked of the server and nothing has come since.
    private var pinged = false

    init(configuration: Configuration, start: PgLSN, now: ContinuousClock.Instant) {
        self.configuration = configuration
        self.flushed = start
        self.lastStatus = now
        self.lastReceived = now
    }

    /// Bytes between what the server sent and what was handed on.
    var lagBytes: UInt64 { serverPosition > flushed ? serverPosition.value - flushed.value : 0 }

    /// When ``tick(now:clock:)`` has something to do next.
    var nextDeadline: ContinuousClock.Instant {
        var deadline = min(lastStatus + configuration.statusInterval, lastReceived + configuration.silenceLimit)
        if let feedbackAt { deadline = min(deadline, feedbackAt) }
        if !pinged { deadline = min(deadline, lastReceived + configuration.statusInterval) }
        return deadline
    }

    /// One CopyData message from the server. `betweenTransactions`: the consumer has no transaction open.
    mutating func received(
        _ bytes: [UInt8], betweenTransactions: Bool, now: ContinuousClock.Instant, clock: PgTimestamp
    ) throws(ProtocolError) -> [Action] {
        lastReceived = now
        pinged = false
        guard let kind = bytes.first else { throw ProtocolError(description: "an empty CopyData message") }
        switch kind {
        case UInt8(ascii: "w"):
            guard bytes.count >= 25 else { throw ProtocolError(description: "an XLogData message of \(bytes.count) bytes") }
            let start = PgLSN(Self.uint64(bytes, at: 1))
            let end = PgLSN(Self.uint64(bytes, at: 9))
            serverPosition = max(serverPosition, end, start)
            return [.decode(start: start, Array(bytes[25...]))]
        case UInt8(ascii: "k"):
            guard bytes.count >= 18 else { throw ProtocolError(description: "a keepalive message of \(bytes.count) bytes") }
            let end = PgLSN(Self.uint64(bytes, at: 1))
            let replyRequested = bytes[17] != 0
            serverPosition = max(serverPosition, end)
            if betweenTransactions { advance(to: end, now: now) }
            if replyRequested { return [statusUpdate(now: now, clock: clock, replyRequested: false)] }
            return []
        default:
            throw ProtocolError(description: "an unknown CopyData message '\(Character(Unicode.Scalar(kind)))'")
        }
    }

    /// The consumer handed on everything up to `lsn` (the end of a transaction it delivered).
    mutating func taken(_ lsn: PgLSN, now: ContinuousClock.Instant) {
        advance(to: lsn, now: now)
    }

    private mutating func advance(to lsn: PgLSN, now: ContinuousClock.Instant) {
        guard lsn > flushed else { return }
        flushed = lsn
        if feedbackAt == nil { feedbackAt = now + configuration.feedbackDelay }
    }

    /// What is due at `now`: a status update (for a moved position, the interval, or a ping), or giving up.
    mutating func tick(now: ContinuousClock.Instant, clock: PgTimestamp) -> [Action] {
        let silent = lastReceived.duration(to: now)
        if silent >= configuration.silenceLimit {
            return [.reconnect("PostgreSQL sent nothing for \(silent.seconds) s, not even a reply to a status update")]
        }
        if !pinged && silent >= configuration.statusInterval {
            pinged = true
            return [statusUpdate(now: now, clock: clock, replyRequested: true)]
        }
        if let feedbackAt, now >= feedbackAt { return [statusUpdate(now: now, clock: clock, replyRequested: false)] }
        if lastStatus.duration(to: now) >= configuration.statusInterval {
            return [statusUpdate(now: now, clock: clock, replyRequested: false)]
        }
        return []
    }

    /// The status update that ends the stream (a graceful stop): the handed-on position, so nothing is sent again.
    mutating func finalStatus(now: ContinuousClock.Instant, clock: PgTimestamp) -> [UInt8] {
        guard case .send(let bytes) = statusUpdate(now: now, clock: clock, replyRequested: false) else { return [] }
        return bytes
    }

    private mutating func statusUpdate(now: ContinuousClock.Instant, clock: PgTimestamp, replyRequested: Bool) -> Action {
        lastStatus = now
        feedbackAt = nil
        reported = flushed
        return .send(Self.encodeStatus(written: max(serverPosition, flushed), flushed: flushed, clock: clock, replyRequested: replyRequested))
    }

    /// A standby status update: 'r', written, flushed and applied positions, the client's clock, reply requested.
    static func encodeStatus(written: PgLSN, flushed: PgLSN, clock: PgTimestamp, replyRequested: Bool) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(ascii: "r")]
        bytes.reserveCapacity(34)
        for value in [written.value, flushed.value, flushed.value, UInt64(bitPattern: clock.microsecondsSincePostgresEpoch)] {
            withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
        }
        bytes.append(replyRequested ? 1 : 0)
        return bytes
    }

    static func uint64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in offset..<(offset + 8) { value = value << 8 | UInt64(bytes[index]) }
        return value
    }
}

extension Duration {
    /// Whole and fractional seconds, for messages.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
