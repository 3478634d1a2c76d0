import Foundation
import Logging
import MarqueeCore

/// Follows one event's availability: a small convenience over ``TicketAvailabilityClient`` that merges the
/// connection status and the pictures into one stream (used by `marquee watch`).
public struct EventWatcher: Sendable {
    public enum Update: Sendable {
        case status(ConnectionStatus)
        case availability(AvailabilitySnapshot)
    }

    let configuration: TicketAvailabilityClient.Configuration
    let eventID: UUID
    let transport: any RealtimeTransport
    let logger: Logger

    public init(
        baseURL: String, apiKey: String, eventID: UUID, transport: any RealtimeTransport = WebSocketTransport(),
        heartbeatInterval: Duration = .seconds(25), logger: Logger = Logger(label: "TicketAvailability")
    ) {
        var configuration = TicketAvailabilityClient.Configuration(baseURL: URL(string: baseURL)!, accessToken: apiKey)
        configuration.heartbeatInterval = heartbeatInterval
        self.configuration = configuration
        self.eventID = eventID
        self.transport = transport
        self.logger = logger
    }

    /// Updates until the iterating task is cancelled.
    public func updates() -> AsyncStream<Update> {
        let (stream, continuation) = AsyncStream.makeStream(of: Update.self)
        let client = TicketAvailabilityClient(configuration: configuration, transport: transport, logger: logger)
        let event = eventID
        let task = Task {
            let statuses = await client.statusUpdates()
            guard let subscription = try? await client.subscribe(event: event) else {
                continuation.finish()
                return
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await status in statuses { continuation.yield(.status(status)) } }
                group.addTask { for await snapshot in subscription { continuation.yield(.availability(snapshot)) } }
                await group.next()
                group.cancelAll()
            }
            await client.shutdown()
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }
}
