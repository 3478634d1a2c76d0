import Foundation
import Logging
import Synchronization
import Testing

@testable import MarqueeServer

// MARK: - A queue to await events on

/// An unbounded FIFO with one consumer whose `next()` can be cancelled (and so raced against a deadline).
final class AsyncQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer: [Element] = []
        var finished = false
        var waiter: (id: Int, continuation: CheckedContinuation<Element?, any Error>)?
        var nextID = 0
        var cancelled: Set<Int> = []
    }

    private let state = Mutex(State())

    init() {}

    func push(_ element: Element) {
        let waiter = state.withLock { state -> CheckedContinuation<Element?, any Error>? in
            guard !state.finished else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter.continuation
            }
            state.buffer.append(element)
            return nil
        }
        waiter?.resume(returning: element)
    }

    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Element?, any Error>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume(returning: nil)
    }

    /// The next element, waiting for it; nil once finished and drained.
    func next() async throws -> Element? {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
                let now: Result<Element?, any Error>? = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return .failure(CancellationError()) }
                    if !state.buffer.isEmpty { return .success(state.buffer.removeFirst()) }
                    if state.finished { return .success(nil) }
                    state.waiter = (id, continuation)
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Element?, any Error>? in
                if let waiter = state.waiter, waiter.id == id {
                    state.waiter = nil
                    return waiter.continuation
                }
                state.cancelled.insert(id)
                return nil
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Elements queued and not yet taken.
    var pending: [Element] { state.withLock { $0.buffer } }
}

// MARK: - Logging

/// A log handler that remembers messages so a test can wait for one (e.g. the change feed saying it reads its slot),
/// and prints warnings and errors so a failing test shows why.
struct WatchingLogHandler: LogHandler {
    let watch: LogWatch
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        watch.messages.push(event.message.description)
        if event.level >= .warning {
            let details = (event.metadata ?? [:]).merging(metadata) { a, _ in a }
            print("[server \(event.level)] \(event.message) \(details)")
        }
    }
}

final class LogWatch: Sendable {
    let messages = AsyncQueue<String>()

    /// Waits until `message` has been logged (counting messages logged before the call).
    func waitFor(_ message: String, within limit: Duration = .seconds(30)) async throws {
        try await withDeadline(limit, "waiting for the server to log '\(message)'") {
            while let logged = try await self.messages.next() {
                if logged == message { return }
            }
            throw DeadlineExceeded(what: "the log ended before '\(message)'", limit: limit)
        }
    }

    func logger(label: String = "marquee-test") -> Logger {
        var logger = Logger(label: label) { _ in WatchingLogHandler(watch: self) }
        logger.logLevel = .info
        return logger
    }
}

// MARK: - Small helpers

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A 32+ byte HS256 secret for tests.
let testSecret = "marquee-swift-tests-secret-0123456789abcdef"

func randomSuffix(_ length: Int = 10) -> String {
    String(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(length))
}

func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("marquee-swift-test-\(randomSuffix())").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
