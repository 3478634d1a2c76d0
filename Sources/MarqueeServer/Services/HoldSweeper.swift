import Foundation
import Logging
import ServiceLifecycle

/// Expires holds shortly after `hold_expires_at`, so their seats return to sale (and subscribers see it).
/// Reads already ignore expired holds; this writes the release down and sends it through the change feed.
public struct HoldSweeper<C: Clock>: Service where C.Duration == Duration {
    let repository: any ReservationRepository
    let interval: Duration
    let clock: C
    let logger: Logger

    public init(repository: any ReservationRepository, interval: Duration = .milliseconds(250), clock: C, logger: Logger) {
        self.repository = repository
        self.interval = interval
        self.clock = clock
        self.logger = logger
    }

    /// One pass; returns how many holds expired.
    @discardableResult
    public func sweep() async -> Int {
        do {
            let expired = try await repository.expireHolds()
            if expired > 0 { logger.info("expired holds", metadata: ["count": "\(expired)"]) }
            return expired
        } catch {
            logger.warning("hold sweep failed; retrying", metadata: ["error": "\(describeError(error))"])
            return 0
        }
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await sweep()
                try await clock.sleep(for: interval)
            }
        }
    }
}
