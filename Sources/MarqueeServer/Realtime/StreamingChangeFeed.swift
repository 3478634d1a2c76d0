import Foundation
import Logging
import MarqueeCore

/// The change feed over the streaming replication protocol: a libpq connection with `replication=database` runs
/// `START_REPLICATION SLOT … LOGICAL` and serves its CopyBoth stream, each change decoded once by PostgreSQL and pushed.
///
/// It runs on a thread of its own, waiting in `poll(2)` on the connection's socket and a wake-up pipe, so it never
/// blocks the server's event loops and stops as soon as it is woken. ``ReplicationStream`` decides what to answer and
/// when; this type only moves bytes and hands whole transactions to the hub, in commit order, before their end is
/// reported as flushed (at-least-once). It reconnects after any failure and resumes from the slot's confirmed position;
/// a slot that is gone is created again, and every client told to resync.
struct StreamingChangeFeed: Sendable {
    enum Outcome: Sendable {
        /// Woken to stop: the last position was flushed.
        case stopped
        /// The server does not take replication connections from us.
        case refused(String)
    }

    let parameters: [(String, String)]
    let slotName: String
    let publication: String
    let stream: ReplicationStream.Configuration
    /// Bounds connecting and every command; a silent stream is bounded by `stream.silenceLimit`.
    let deadline: Duration
    let hub: RealtimeHub
    let status: ChangeFeedStatus
    let logger: Logger
    let deliver: @Sendable ([RowChange]) -> Void

    /// Streams, reconnecting, until woken; returns early when the server refuses replication connections before the
    /// first stream.
    func run(waker: ReplicationWaker) -> Outcome {
        var retryDelay: Duration = .milliseconds(100)
        var streamedOnce = false
        var textTypes: Set<UInt32> = []
        while true {
            do {
                try session(waker: waker, textTypes: &textTypes) { streamedOnce = true }
                retryDelay = .milliseconds(100)
            } catch is ReplicationStopped {
                return .stopped
            } catch let error as ReplicationError where error.kind == .refused && !streamedOnce {
                return .refused(error.message)
            } catch {
                hub.feedInterrupted()
                status.connected(false, error: "\(error)")
                status.reconnecting()
                logger.warning("change feed interrupted; reconnecting", metadata: ["error": "\(error)", "retry": "\(retryDelay)"])
                do {
                    try waker.sleep(until: .now + retryDelay)
                } catch {
                    return .stopped
                }
                retryDelay = min(retryDelay * 2, .seconds(2))
            }
        }
    }

    /// One connection: from connecting to the end of its stream.
    private func session(waker: ReplicationWaker, textTypes: inout Set<UInt32>, started: () -> Void) throws {
        let connection = try ReplicationConnection(parameters: parameters, waker: waker, deadline: .now + deadline)
        defer { connection.finish() }
        do {
            try connection.execute("IDENTIFY_SYSTEM", until: .now + deadline)
        } catch let error as ReplicationError where error.sqlState == "42601" {
            // a plain session (a pooler dropped the replication parameter): the command is not known
            throw ReplicationError(kind: .refused, message: "the connection is not a replication connection: \(error.message)")
        }
        // the database's own types (domains, composites, arrays of them), so that their values are rendered as to_jsonb
        // renders them; types that are not in pg_type any more are sent as text
        var catalog = PgTypeCatalog()
        for row in try connection.execute(PgTypeCatalog.query, until: .now + deadline) where row.count == 6 {
            catalog.add(
                row: Int64(row[0] ?? "") ?? 0, kind: row[1] ?? "", related: Int64(row[2] ?? "") ?? 0, text: row[3] ?? "", fieldName: row[4] ?? "",
                fieldType: Int64(row[5] ?? "") ?? 0)
        }
        for oid in textTypes where !catalog.knows(oid) { catalog.add(oid, .text) }
        var configuration = stream
        if let text = try connection.execute("SHOW wal_sender_timeout", until: .now + deadline).first?.first ?? nil,
            let timeout = Self.parseDuration(text)
        {
            configuration.fit(walSenderTimeout: timeout)
        }
        let start = "START_REPLICATION SLOT \"\(slotName)\" LOGICAL 0/0 (proto_version '1', publication_names '\"\(publication)\"')"
        do {
            try connection.execute(start, until: .now + deadline, untilCopy: true)
        } catch let error as ReplicationError where error.kind == .slotMissing {
            try connection.execute("CREATE_REPLICATION_SLOT \"\(slotName)\" LOGICAL pgoutput NOEXPORT_SNAPSHOT", until: .now + deadline)
            let closed = hub.resyncEveryone(reason: "the change feed's replication slot was lost and created again: reconnect and resync")
            status.slotRecreated()
            logger.warning(
                "replication slot was gone (dropped?); created it again and told every client to resync",
                metadata: ["slot": "\(slotName)", "sockets": "\(closed)"])
            try connection.execute(start, until: .now + deadline, untilCopy: true)
        }
        started()
        try copyBoth(connection, configuration: configuration, catalog: catalog, textTypes: &textTypes, waker: waker)
    }

    /// Serves the CopyBoth stream until it fails or the waker asks to stop (then the position is flushed first).
    private func copyBoth(
        _ connection: ReplicationConnection, configuration: ReplicationStream.Configuration, catalog: PgTypeCatalog, textTypes: inout Set<UInt32>,
        waker: ReplicationWaker
    ) throws {
        var machine = ReplicationStream(configuration: configuration, start: .invalid, now: .now)
        var assembler = ChangeAssembler()
        assembler.catalog = catalog
        var pendingWrite = false
        status.streaming(statusInterval: configuration.statusInterval)
        hub.feedStreaming()
        logger.info("change feed reading", metadata: ["slot": "\(slotName)", "mode": "streaming"])

        func perform(_ actions: [ReplicationStream.Action]) throws {
            for action in actions {
                switch action {
                case .decode(_, let bytes):
                    let events = try assembler.consume(bytes)
                    if bytes.first == UInt8(ascii: "C"), bytes.count >= 18 {
                        let missing = assembler.typesMissingFromCatalog
                        if !missing.isEmpty {
                            // a type created since the catalog was read: nothing of this transaction is handed on or
                            // confirmed; the stream starts again from the slot with the catalog read anew, and a type
                            // still not in pg_type then is sent as text
                            textTypes.formUnion(missing)
                            throw ReplicationError(kind: .failed, message: "a change uses a type created since the feed started; reading it again")
                        }
                        let end = PgLSN(ReplicationStream.uint64(bytes, at: 10))
                        var changes: [RowChange] = []
                        for case .row(let change) in events { changes.append(change) }
                        deliver(changes)
                        machine.taken(end, now: .now)
                        status.delivered(
                            count: changes.count, lsn: end, commit: changes.last?.commitTimestamp.date,
                            oldestCommit: changes.first?.commitTimestamp.date)
                    }
                case .send(let bytes):
                    pendingWrite = try connection.writeCopy(bytes)
                case .reconnect(let reason):
                    throw ReplicationError(kind: .failed, message: reason)
                }
            }
        }

        do {
            var consume = true
            while true {
                // everything that arrived, then what is due
                while case .data(let bytes) = try connection.readCopy(consume: consume) {
                    consume = false
                    try perform(
                        try machine.received(bytes, betweenTransactions: !assembler.isInTransaction, now: .now, clock: PgTimestamp.now))
                }
                try perform(machine.tick(now: .now, clock: .now))
                if !assembler.isInTransaction { status.position(server: machine.serverPosition, flushed: machine.flushed) }
                if pendingWrite { pendingWrite = try connection.flushNow() }
                _ = try waker.wait(fd: connection.socket, write: pendingWrite, until: machine.nextDeadline)
                consume = true
            }
        } catch is ReplicationStopped {
            // a graceful stop: report what was handed on, so that a restart does not deliver it again
            let final = machine.finalStatus(now: .now, clock: .now)
            let until = ContinuousClock.now + .seconds(2)
            _ = try? connection.writeCopy(final)
            try? connection.endCopy(until: until)
            status.position(server: machine.serverPosition, flushed: machine.flushed)
            logger.info("change feed stopped", metadata: ["slot": "\(slotName)", "flushed": "\(machine.flushed)"])
            throw ReplicationStopped()
        }
    }

    /// A setting's value as `SHOW` prints it (`60s`, `1min`, `500ms`, `0`).
    static func parseDuration(_ text: String) -> Duration? {
        let digits = text.prefix { $0.isNumber }
        guard let value = Int64(digits) else { return nil }
        switch text.dropFirst(digits.count).trimmingCharacters(in: .whitespaces) {
        case "", "ms": return .milliseconds(value)
        case "s": return .seconds(value)
        case "min": return .seconds(value * 60)
        case "h": return .seconds(value * 3600)
        case "d": return .seconds(value * 86400)
        case "us": return .microseconds(value)
        default: return nil
        }
    }
}

extension PgTimestamp {
    /// The current time, as the replication protocol's clock fields carry it.
    static var now: PgTimestamp { PgTimestamp(unixMicroseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)) }
}
