import CLibPQ
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a replication connection failed, sorted by what the feed does about it.
struct ReplicationError: Error, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        /// The server (or a pooler in front of it) does not take replication connections from us: poll over SQL instead.
        case refused
        /// The slot is gone (an operator dropped it): create it again and tell subscribers to resync.
        case slotMissing
        /// Anything else (the database restarting, a cut connection): connect again.
        case failed
    }

    var kind: Kind
    var message: String
    var sqlState: String?
    var description: String { message }

    /// Sorts a failure to connect: refusals of the replication startup parameter or of the walsender say so.
    static func connecting(_ message: String) -> ReplicationError {
        let lowered = message.lowercased()
        let refused = lowered.contains("replication") || lowered.contains("walsender") || lowered.contains("wal sender")
        return ReplicationError(kind: refused ? .refused : .failed, message: message.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Asked to stop (the feed's service is shutting down): every wait of the feed's thread ends with it.
struct ReplicationStopped: Error {}

/// Wakes the feed's thread from `poll(2)` when the service stops: the read end of a pipe is in every wait.
final class ReplicationWaker: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw ReplicationError(kind: .failed, message: "pipe() failed: \(errno)") }
        readEnd = fds[0]
        writeEnd = fds[1]
        _ = fcntl(writeEnd, F_SETFL, fcntl(writeEnd, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Ends the current and every later wait (the byte is never read).
    func wake() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// Waits until `fd` is ready (readable, or writable too when `write`), or `deadline` passes (false).
    /// Throws ``ReplicationStopped`` once ``wake()`` was called.
    func wait(fd: Int32?, write: Bool = false, until deadline: ContinuousClock.Instant) throws(ReplicationStopped) -> Bool {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            let milliseconds = remaining <= .zero ? 0 : Int32(min(remaining.seconds * 1000 + 1, 60_000))
            var fds = [pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)]
            if let fd { fds.append(pollfd(fd: fd, events: Int16(POLLIN) | (write ? Int16(POLLOUT) : 0), revents: 0)) }
            let result = poll(&fds, nfds_t(fds.count), milliseconds)
            if result < 0 && errno == EINTR { continue }
            if fds[0].revents != 0 { throw ReplicationStopped() }
            if fds.count > 1 && fds[1].revents != 0 { return true }
            if result <= 0 && remaining <= .zero { return false }
            if result <= 0 && ContinuousClock.now >= deadline { return false }
        }
    }

    /// Sleeps until `deadline` unless woken.
    func sleep(until deadline: ContinuousClock.Instant) throws(ReplicationStopped) {
        _ = try wait(fd: nil, until: deadline)
    }
}

/// One libpq connection in replication mode (`replication=database`), non-blocking, driven from the feed's own thread:
/// commands (`IDENTIFY_SYSTEM`, `SHOW`, `CREATE_REPLICATION_SLOT`), then the CopyBoth stream of `START_REPLICATION`.
/// libpq brings what a hand-written client would have to redo: SCRAM, TLS with `sslmode`, `.pgpass`, service files.
///
/// Not Sendable: it lives and dies on the feed's thread.
final class ReplicationConnection {
    private var connection: OpaquePointer?
    let waker: ReplicationWaker

    /// The libpq connection parameters for `database`, with `replication=database`.
    static func parameters(for database: DatabaseURL) -> [(String, String)] {
        var parameters: [(String, String)] = [
            ("host", database.host), ("port", String(database.port)), ("user", database.username), ("dbname", database.database),
            ("application_name", "marquee change feed"), ("replication", "database"),
        ]
        if let password = database.password { parameters.append(("password", password)) }
        // the walsender prints values with these settings, as every other Marquee session does (the value converter
        // reads ISO dates and UTC timestamps)
        if !database.options.contains(where: { $0.0 == "options" }) { parameters.append(("options", DatabaseURL.sessionOptions)) }
        for (name, value) in database.options where !parameters.contains(where: { $0.0 == name }) { parameters.append((name, value)) }
        if !parameters.contains(where: { $0.0 == "sslmode" }) { parameters.append(("sslmode", database.requireTLS ? "require" : "disable")) }
        return parameters
    }

    /// Connects, bounded by `deadline` and the waker.
    init(parameters: [(String, String)], waker: ReplicationWaker, deadline: ContinuousClock.Instant) throws {
        self.waker = waker
        let keywords = parameters.map { strdup($0.0) } + [nil]
        let values = parameters.map { strdup($0.1) } + [nil]
        defer { (keywords + values).forEach { free($0) } }
        connection = keywords.withUnsafeBufferPointer { keys in
            values.withUnsafeBufferPointer { values in
                keys.withMemoryRebound(to: UnsafePointer<CChar>?.self) { keys in
                    values.withMemoryRebound(to: UnsafePointer<CChar>?.self) { values in
                        PQconnectStartParams(keys.baseAddress, values.baseAddress, 0)
                    }
                }
            }
        }
        guard let connection else { throw ReplicationError(kind: .failed, message: "libpq could not allocate a connection") }
        if PQstatus(connection) == CONNECTION_BAD { throw ReplicationError.connecting(errorMessage) }
        var polling = PGRES_POLLING_WRITING
        while polling != PGRES_POLLING_OK {
            if polling == PGRES_POLLING_FAILED { throw ReplicationError.connecting(errorMessage) }
            guard try waker.wait(fd: PQsocket(connection), write: polling == PGRES_POLLING_WRITING, until: deadline) else {
                throw ReplicationError(kind: .failed, message: "connecting took longer than the feed's deadline")
            }
            polling = PQconnectPoll(connection)
        }
        guard PQsetnonblocking(connection, 1) == 0 else { throw ReplicationError(kind: .failed, message: errorMessage) }
    }

    deinit { finish() }

    /// Closes the connection (at once: a graceful stop flushes its last status before).
    func finish() {
        if let connection { PQfinish(connection) }
        connection = nil
    }

    var errorMessage: String {
        guard let connection, let text = PQerrorMessage(connection) else { return "no connection" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var socket: Int32 { connection.map { PQsocket($0) } ?? -1 }

    /// The server's version, e.g. 150018.
    var serverVersion: Int { connection.map { Int(PQserverVersion($0)) } ?? 0 }

    private func live() throws -> OpaquePointer {
        guard let connection else { throw ReplicationError(kind: .failed, message: "the replication connection is closed") }
        return connection
    }

    /// Sends what libpq holds back, waiting for the socket as long as it takes (bounded by `deadline`).
    func flush(until deadline: ContinuousClock.Instant) throws {
        let connection = try live()
        while true {
            let result = PQflush(connection)
            if result == 0 { return }
            if result < 0 { throw ReplicationError(kind: .failed, message: errorMessage) }
            guard try waker.wait(fd: PQsocket(connection), write: true, until: deadline) else {
                throw ReplicationError(kind: .failed, message: "PostgreSQL took no data for longer than the feed's deadline")
            }
            // the server may be waiting for us to read before it reads on
            guard PQconsumeInput(connection) == 1 else { throw ReplicationError(kind: .failed, message: errorMessage) }
        }
    }

    /// Runs one command and returns its rows as text; with `untilCopy`, stops at the CopyBoth result of
    /// `START_REPLICATION` instead (returning no rows).
    @discardableResult
    func execute(_ command: String, until deadline: ContinuousClock.Instant, untilCopy: Bool = false) throws -> [[String?]] {
        let connection = try live()
        guard PQsendQuery(connection, command) == 1 else { throw ReplicationError(kind: .failed, message: errorMessage) }
        try flush(until: deadline)
        var rows: [[String?]] = []
        var failure: ReplicationError?
        while true {
            while PQisBusy(connection) == 1 {
                guard try waker.wait(fd: PQsocket(connection), until: deadline) else {
                    throw ReplicationError(kind: .failed, message: "'\(command.prefix(40))' did not finish within the feed's deadline")
                }
                guard PQconsumeInput(connection) == 1 else { throw ReplicationError(kind: .failed, message: errorMessage) }
            }
            guard let result = PQgetResult(connection) else { break }
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            if status == PGRES_COPY_BOTH && untilCopy { return [] }
            if status == PGRES_TUPLES_OK {
                for row in 0..<PQntuples(result) {
                    rows.append(
                        (0..<PQnfields(result)).map { column in
                            PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                        })
                }
            } else if status != PGRES_COMMAND_OK && failure == nil {
                let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
                let message = PQresultErrorMessage(result).map { String(cString: $0) } ?? "error"
                failure = ReplicationError(
                    kind: state == "42704" ? .slotMissing : .failed, message: message.trimmingCharacters(in: .whitespacesAndNewlines),
                    sqlState: state)
            }
        }
        if let failure { throw failure }
        return rows
    }

    /// What reading the stream found.
    enum CopyRead {
        case data([UInt8])
        /// Nothing more until the socket is readable again.
        case wouldBlock
    }

    /// Takes what arrived on the socket and returns the next whole CopyData message, if one is there.
    func readCopy(consume: Bool) throws -> CopyRead {
        let connection = try live()
        if consume { guard PQconsumeInput(connection) == 1 else { throw ReplicationError(kind: .failed, message: errorMessage) } }
        var buffer: UnsafeMutablePointer<CChar>?
        let length = PQgetCopyData(connection, &buffer, 1)
        if length > 0, let buffer {
            defer { PQfreemem(buffer) }
            return .data(Array(UnsafeRawBufferPointer(start: buffer, count: Int(length))))
        }
        if length == 0 { return .wouldBlock }
        if length == -1 {
            // the server ended the stream: its result says why
            var message = "PostgreSQL ended the replication stream"
            var kind = ReplicationError.Kind.failed
            while let result = PQgetResult(connection) {
                if let text = PQresultErrorMessage(result), text.pointee != 0 {
                    message = String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
                    if let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))), String(cString: state) == "42704" { kind = .slotMissing }
                }
                PQclear(result)
            }
            throw ReplicationError(kind: kind, message: message)
        }
        throw ReplicationError(kind: .failed, message: errorMessage)
    }

    /// Queues one CopyData message; returns whether libpq still holds bytes to send (wait for the socket to be writable).
    func writeCopy(_ bytes: [UInt8]) throws -> Bool {
        let connection = try live()
        let queued = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(connection, $0.baseAddress, Int32($0.count)) }
        }
        guard queued == 1 else { throw ReplicationError(kind: .failed, message: errorMessage) }
        return try flushNow()
    }

    /// Sends what it can without waiting; returns whether bytes are left.
    func flushNow() throws -> Bool {
        let connection = try live()
        let result = PQflush(connection)
        if result < 0 { throw ReplicationError(kind: .failed, message: errorMessage) }
        return result == 1
    }

    /// Ends the copy from our side (a graceful stop), sending within `deadline`.
    func endCopy(until deadline: ContinuousClock.Instant) throws {
        let connection = try live()
        guard PQputCopyEnd(connection, nil) == 1 else { throw ReplicationError(kind: .failed, message: errorMessage) }
        try flush(until: deadline)
    }
}
