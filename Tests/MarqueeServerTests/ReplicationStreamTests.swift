import MarqueeCore
import Testing

@testable import MarqueeServer

/// The CopyBoth side of the streaming change feed, without a database: messages in, answers out, time injected.
struct ReplicationStreamTests {
    let start = ContinuousClock.now
    let clock = PgTimestamp(microsecondsSincePostgresEpoch: 1_000_000)

    func machine(_ configure: (inout ReplicationStream.Configuration) -> Void = { _ in }) -> ReplicationStream {
        var configuration = ReplicationStream.Configuration()
        configure(&configuration)
        return ReplicationStream(configuration: configuration, start: .invalid, now: start)
    }

    static func bytes(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }

    static func xlogData(start: UInt64, end: UInt64, _ payload: [UInt8]) -> [UInt8] {
        [UInt8(ascii: "w")] + bytes(start) + bytes(end) + bytes(0) + payload
    }

    static func keepalive(end: UInt64, replyRequested: Bool) -> [UInt8] {
        [UInt8(ascii: "k")] + bytes(end) + bytes(0) + [replyRequested ? 1 : 0]
    }

    /// (written, flushed, applied, reply requested) of a standby status update.
    static func status(_ action: ReplicationStream.Action?) throws -> (written: UInt64, flushed: UInt64, applied: UInt64, reply: Bool) {
        guard case .send(let bytes) = action else { throw TestFailure("expected a status update, got \(String(describing: action))") }
        #expect(bytes.count == 34)
        #expect(bytes.first == UInt8(ascii: "r"))
        return (
            ReplicationStream.uint64(bytes, at: 1), ReplicationStream.uint64(bytes, at: 9), ReplicationStream.uint64(bytes, at: 17),
            bytes[33] == 1
        )
    }

    @Test func xLogDataIsHandedOnAsPgOutputBytes() throws {
        var stream = machine()
        let actions = try stream.received(
            Self.xlogData(start: 0x100, end: 0x180, [UInt8(ascii: "B"), 1, 2]), betweenTransactions: true, now: start, clock: clock)
        #expect(actions == [.decode(start: PgLSN(0x100), [UInt8(ascii: "B"), 1, 2])])
        #expect(stream.serverPosition == PgLSN(0x180))
        // nothing was handed on yet: nothing is flushed
        #expect(stream.flushed == .invalid)
        #expect(stream.lagBytes == 0x180)
    }

    @Test func aKeepaliveAskingForAReplyIsAnsweredAtOnceWithOnlyWhatWasTaken() throws {
        var stream = machine()
        _ = try stream.received(Self.xlogData(start: 0x100, end: 0x200, [UInt8(ascii: "B")]), betweenTransactions: true, now: start, clock: clock)
        // mid-transaction: the keepalive's position is not flushed, only what the consumer took
        let answer = try stream.received(Self.keepalive(end: 0x300, replyRequested: true), betweenTransactions: false, now: start, clock: clock)
        let status = try Self.status(answer.first)
        #expect(answer.count == 1)
        #expect(status.flushed == 0)
        #expect(status.applied == 0)
        #expect(status.written == 0x300)
        #expect(!status.reply)
        stream.taken(PgLSN(0x250), now: start)
        let second = try stream.received(Self.keepalive(end: 0x300, replyRequested: true), betweenTransactions: false, now: start, clock: clock)
        #expect(try Self.status(second.first).flushed == 0x250)
    }

    @Test func anIdleKeepaliveAdvancesTheFlushedPositionBetweenTransactions() throws {
        var stream = machine()
        stream.taken(PgLSN(0x100), now: start)
        let quiet = try stream.received(Self.keepalive(end: 0x900, replyRequested: false), betweenTransactions: true, now: start, clock: clock)
        #expect(quiet.isEmpty)
        #expect(stream.flushed == PgLSN(0x900))
        // the advance is reported within the feedback delay, not at once
        #expect(stream.tick(now: start + .milliseconds(50), clock: clock).isEmpty)
        let status = try Self.status(stream.tick(now: start + .milliseconds(100), clock: clock).first)
        #expect(status.flushed == 0x900)
        #expect(stream.reported == PgLSN(0x900))
    }

    @Test func takenPositionsCoalesceIntoOneStatusUpdateAfterTheFeedbackDelay() throws {
        var stream = machine { $0.feedbackDelay = .milliseconds(20) }
        stream.taken(PgLSN(0x10), now: start)
        stream.taken(PgLSN(0x20), now: start + .milliseconds(5))
        stream.taken(PgLSN(0x15), now: start + .milliseconds(6))  // never backwards
        #expect(stream.nextDeadline == start + .milliseconds(20))
        #expect(stream.tick(now: start + .milliseconds(19), clock: clock).isEmpty)
        let status = try Self.status(stream.tick(now: start + .milliseconds(20), clock: clock).first)
        #expect(status.flushed == 0x20)
        #expect(stream.tick(now: start + .milliseconds(21), clock: clock).isEmpty)
    }

    @Test func statusGoesOutAtLeastEveryHalfOfWalSenderTimeout() throws {
        var stream = machine { $0.fit(walSenderTimeout: .seconds(4)) }
        #expect(stream.configuration.statusInterval == .seconds(2))
        #expect(stream.configuration.silenceLimit >= .seconds(4))
        // the server keeps talking (so no ping), and the interval still brings a status update
        _ = try stream.received(Self.keepalive(end: 0x10, replyRequested: false), betweenTransactions: false, now: start + .seconds(1), clock: clock)
        #expect(stream.tick(now: start + .milliseconds(1999), clock: clock).isEmpty)
        let status = try Self.status(stream.tick(now: start + .seconds(2), clock: clock).first)
        #expect(!status.reply)
    }

    @Test func aTimeoutOfZeroLeavesTheDefaults() {
        var configuration = ReplicationStream.Configuration()
        configuration.fit(walSenderTimeout: .zero)
        #expect(configuration.statusInterval == .seconds(10))
    }

    @Test func aSilentServerIsAskedForAReplyThenGivenUp() throws {
        var stream = machine {
            $0.statusInterval = .seconds(1)
            $0.silenceLimit = .seconds(3)
        }
        let ping = try Self.status(stream.tick(now: start + .seconds(1), clock: clock).first)
        #expect(ping.reply)
        // asked once: not again every tick
        #expect(stream.tick(now: start + .milliseconds(1500), clock: clock).isEmpty)
        let periodic = try Self.status(stream.tick(now: start + .seconds(2), clock: clock).first)
        #expect(!periodic.reply)
        guard case .reconnect(let reason) = stream.tick(now: start + .seconds(3), clock: clock).first else {
            throw TestFailure("a server silent past the limit must be given up")
        }
        #expect(reason.contains("sent nothing"))
    }

    @Test func anAnswerEndsTheSilence() throws {
        var stream = machine {
            $0.statusInterval = .seconds(1)
            $0.silenceLimit = .seconds(3)
        }
        _ = stream.tick(now: start + .seconds(1), clock: clock)
        _ = try stream.received(Self.keepalive(end: 0x10, replyRequested: false), betweenTransactions: true, now: start + .seconds(2), clock: clock)
        let actions = stream.tick(now: start + .seconds(3), clock: clock)
        #expect(!actions.contains { if case .reconnect = $0 { true } else { false } })
    }

    @Test func theFinalStatusReportsWhatWasTaken() throws {
        var stream = machine()
        stream.taken(PgLSN(0xABCDEF), now: start)
        let bytes = stream.finalStatus(now: start, clock: clock)
        let status = try Self.status(.send(bytes))
        #expect(status.flushed == 0xABCDEF)
        #expect(ReplicationStream.uint64(bytes, at: 25) == UInt64(clock.microsecondsSincePostgresEpoch))
    }

    @Test func malformedMessagesAreErrorsNotCrashes() {
        var stream = machine()
        for bad: [UInt8] in [[], [UInt8(ascii: "w"), 0, 0], [UInt8(ascii: "k"), 1], [UInt8(ascii: "x")]] {
            #expect(throws: ReplicationStream.ProtocolError.self) {
                try stream.received(bad, betweenTransactions: true, now: start, clock: clock)
            }
        }
    }

    @Test func settingsAreReadAsShowPrintsThem() {
        #expect(StreamingChangeFeed.parseDuration("60s") == .seconds(60))
        #expect(StreamingChangeFeed.parseDuration("1min") == .seconds(60))
        #expect(StreamingChangeFeed.parseDuration("500ms") == .milliseconds(500))
        #expect(StreamingChangeFeed.parseDuration("0") == .zero)
        #expect(StreamingChangeFeed.parseDuration("soon") == nil)
    }

    @Test func refusalsOfReplicationAreToldApartFromOutages() {
        #expect(ReplicationError.connecting("FATAL:  no pg_hba.conf entry for replication connection from host \"127.0.0.1\"").kind == .refused)
        #expect(ReplicationError.connecting("FATAL:  must be superuser or replication role to start walsender").kind == .refused)
        #expect(ReplicationError.connecting("ERROR: unsupported startup parameter: replication").kind == .refused)
        #expect(ReplicationError.connecting("connection to server at \"127.0.0.1\", port 5432 failed: Connection refused").kind == .failed)
        #expect(ReplicationError.connecting("FATAL:  the database system is starting up").kind == .failed)
    }
}
