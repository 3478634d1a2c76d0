import Foundation
import MarqueeCore

#if canImport(Observation)
    import Observation
#endif

/// A handle on one event's availability, from ``TicketAvailabilityClient/subscribe(event:)``.
///
/// Iterate it for the event's picture: one ``AvailabilitySnapshot`` per change (latest wins). It is a single-consumer
/// sequence. The subscription ends — and the event's channel is left once no other handle uses it — when you call
/// ``cancel()``, when the iterating task is cancelled, or when the handle is deinitialized.
public final class AvailabilitySubscription: AsyncSequence, Sendable {
    public typealias Element = AvailabilitySnapshot
    public typealias AsyncIterator = AsyncStream<AvailabilitySnapshot>.Iterator

    /// The event followed.
    public let event: UUID
    private let stream: AsyncStream<AvailabilitySnapshot>
    private let continuation: AsyncStream<AvailabilitySnapshot>.Continuation

    init(event: UUID, stream: AsyncStream<AvailabilitySnapshot>, continuation: AsyncStream<AvailabilitySnapshot>.Continuation) {
        self.event = event
        self.stream = stream
        self.continuation = continuation
    }

    public func makeAsyncIterator() -> AsyncStream<AvailabilitySnapshot>.Iterator { stream.makeAsyncIterator() }

    /// Ends this subscription (idempotent).
    public func cancel() { continuation.finish() }

    deinit { continuation.finish() }
}

#if canImport(Observation)
    /// An observable view model of one event for SwiftUI (or any Observation user): ``snapshot``,
    /// ``connectionStatus`` and ``lastError`` update on the main actor while ``run()`` runs (e.g. in `.task { }`).
    @MainActor @Observable
    public final class AvailabilityModel {
        public let event: UUID
        public private(set) var snapshot: AvailabilitySnapshot?
        public private(set) var connectionStatus: ConnectionStatus = .connecting
        public private(set) var lastError: TicketAvailabilityError?
        @ObservationIgnored private let client: TicketAvailabilityClient

        public init(client: TicketAvailabilityClient, event: UUID) {
            self.client = client
            self.event = event
        }

        /// Follows the event until the calling task is cancelled; the subscription ends with it.
        public func run() async throws {
            let subscription = try await client.subscribe(event: event)
            let statuses = await client.statusUpdates()
            let errors = await client.errors()
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await status in statuses { await self.update(status: status) } }
                group.addTask { for await error in errors { await self.update(error: error) } }
                group.addTask { for await snapshot in subscription { await self.update(snapshot: snapshot) } }
                await group.next()
                group.cancelAll()
            }
            subscription.cancel()
        }

        private func update(status: ConnectionStatus) { connectionStatus = status }
        private func update(error: TicketAvailabilityError) { lastError = error }
        private func update(snapshot: AvailabilitySnapshot) { self.snapshot = snapshot }
    }
#endif
