import CoreMetrics
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Expires holds shortly after `hold_expires_at`, so their seats return to sale (and subscribers see it).
/// Reads already ignore expired holds; this writes the release down and sends it through the change feed.
public struct HoldSweeper<C: Clock>: Service where C.Duration == Duration {
    let repository: any ReservationRepository
    let interval: Duration
    let warningSeconds: Int
    let clock: C
    let logger: Logger
    /// Told how many holds each pass expired (for `marquee_reservations_total{outcome="expired"}`).
    let onExpired: @Sendable (Int) -> Void

    public init(
        repository: any ReservationRepository, interval: Duration = .milliseconds(250), warningSeconds: Int = 60, clock: C, logger: Logger,
        onExpired: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.onExpired = onExpired
        self.repository = repository
        self.interval = interval
        self.warningSeconds = warningSeconds
        self.clock = clock
        self.logger = logger
    }

    /// One pass; returns how many holds expired.
    @discardableResult
    public func sweep() async -> Int {
        do {
            let expired = try await repository.expireHolds()
            if expired > 0 {
                logger.info("expired holds", metadata: ["count": "\(expired)"])
                onExpired(expired)
            }
            if warningSeconds > 0 { _ = try await repository.warnExpiringHolds(within: warningSeconds) }
            return expired
        } catch {
            logger.warning("hold sweep failed; retrying", metadata: ["error": "\(describeError(error))"])
            return 0
        }
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    await sweep()
                    try await clock.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            // shutting down
        }
    }
}

/// Removes stored broadcast messages older than the retention, in bounded batches, on a schedule.
public struct MessageRetention<C: Clock>: Service where C.Duration == Duration {
    let client: PostgresClient
    let retentionSeconds: Int
    let interval: Duration
    let clock: C
    let logger: Logger
    let removed: CoreMetrics.Counter?
    let deadline: DatabaseDeadline

    public init(
        client: PostgresClient, retentionSeconds: Int, interval: Duration = .seconds(600), removed: CoreMetrics.Counter? = nil,
        deadline: DatabaseDeadline = DatabaseDeadline(), clock: C, logger: Logger
    ) {
        self.removed = removed
        self.deadline = deadline
        self.client = client
        self.retentionSeconds = retentionSeconds
        self.interval = interval
        self.clock = clock
        self.logger = logger
    }

    /// One pass: deletes batches until none are left; returns how many messages it removed.
    @discardableResult
    public func prune() async throws -> Int {
        var total = 0
        while true {
            let count = try await deadline.run("pruning broadcast messages") {
                let rows = try await client.query(
                    "select realtime.prune_messages(make_interval(secs => \(retentionSeconds)), 10000)", logger: logger)
                var count = 0
                for try await value in rows.decode(Int.self) { count = value }
                return count
            }
            total += count
            if count < 10000 { break }
        }
        removed?.increment(by: total)
        logger.info("pruned broadcast messages", metadata: ["removed": "\(total)", "retention_seconds": "\(retentionSeconds)"])
        return total
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do {
                        try await prune()
                    } catch is CancellationError {
                        return
                    } catch {
                        logger.warning("pruning broadcast messages failed", metadata: ["error": "\(describeError(error))"])
                    }
                    try await clock.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            // shutting down
        }
    }
}
