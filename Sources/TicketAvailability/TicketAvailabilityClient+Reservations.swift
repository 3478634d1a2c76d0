import Foundation
import MarqueeCore

/// An optimistic hold shown in the local picture until the server's own rows include it (or it is refused).
struct Hold: Sendable {
    var event: UUID
    var ticketType: UUID
    var quantity: Int
    /// The type's version when the request was made.
    var versionAtRequest: Int64
    var confirmed = false
}

/// A reservation waiting to be sent (or re-sent with the same idempotency key).
struct QueuedReservation: Sendable {
    var hold: Int
    var event: UUID
    var ticketType: UUID
    var quantity: Int
    var idempotencyKey: String
    var continuation: CheckedContinuation<Reservation, any Error>
}

extension TicketAvailabilityClient {
    /// Holds `quantity` tickets of `ticketType`: the hold shows in the local picture at once; the request is sent now,
    /// or, if the server cannot be reached, queued and sent when the connection returns (always with the same
    /// `idempotencyKey`, so it is never held twice). Returns once the server has answered.
    ///
    /// Cancelling the calling task withdraws a request that is still queued (``ReservationError/cancelled``); one
    /// already on its way to the server is answered as usual.
    /// - Throws: ``ReservationError`` (the optimistic hold is rolled back first).
    public func reserve(event: UUID, ticketType: UUID, quantity: Int, idempotencyKey: String = UUID().uuidString) async throws
        -> Reservation
    {
        guard !isShutDown, !Task.isCancelled else { throw ReservationError.cancelled }
        nextID += 1
        let holdID = nextID
        let version = table.book(event)?.ticketTypes[ticketType]?.version ?? 0
        holds[holdID] = Hold(event: event, ticketType: ticketType, quantity: quantity, versionAtRequest: version)
        deliver(event)
        ensureRunning()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                queue.append(
                    QueuedReservation(
                        hold: holdID, event: event, ticketType: ticketType, quantity: quantity, idempotencyKey: idempotencyKey,
                        continuation: continuation))
                startFlush()
            }
        } onCancel: {
            Task { await self.withdraw(hold: holdID) }
        }
    }

    /// Takes a queued reservation back (its caller was cancelled). One being sent right now is withdrawn only if that
    /// attempt does not reach the server; if it does, its answer stands.
    func withdraw(hold: Int) {
        guard inFlight != hold else {
            withdrawn.insert(hold)
            return
        }
        guard let index = queue.firstIndex(where: { $0.hold == hold }) else { return }
        let item = queue.remove(at: index)
        holds[hold] = nil
        deliver(item.event)
        item.continuation.resume(throwing: ReservationError.cancelled)
    }

    /// Reservations made but not yet answered by the server.
    public var queuedReservations: Int { queue.count }

    func startFlush() {
        guard !flushing, !queue.isEmpty else { return }
        flushing = true
        Task { await self.flush() }
    }

    /// Sends queued reservations one at a time, oldest first; stops at the first one the server cannot be reached for.
    private func flush() async {
        defer {
            flushing = false
            inFlight = nil
        }
        while let item = queue.first, !isShutDown {
            inFlight = item.hold
            let outcome: MarqueeAPI.ReserveOutcome
            do {
                outcome = try await api.reserve(
                    event: item.event, ticketType: item.ticketType, quantity: item.quantity, idempotencyKey: item.idempotencyKey,
                    token: accessToken)
            } catch {
                inFlight = nil
                if withdrawn.remove(item.hold) != nil {
                    withdraw(hold: item.hold)
                    continue
                }
                logger.debug("reservation queued until the server is reachable", metadata: ["error": "\(error)"])
                return
            }
            withdrawn.remove(item.hold)
            guard let index = queue.firstIndex(where: { $0.hold == item.hold }) else { continue }
            queue.remove(at: index)
            switch outcome {
            case .reserved(let reservation):
                holds[item.hold]?.confirmed = true
                if let hold = holds[item.hold], (table.book(item.event)?.ticketTypes[item.ticketType]?.version ?? 0) > hold.versionAtRequest {
                    holds[item.hold] = nil
                }
                deliver(item.event)
                item.continuation.resume(returning: reservation)
            case .refused(let error):
                holds[item.hold] = nil
                deliver(item.event)
                item.continuation.resume(throwing: error)
            }
        }
        if table.channels.isEmpty, queue.isEmpty, let task = runTask {
            runTask = nil
            task.cancel()
            setStatus(.disconnected(reason: "no subscriptions"))
        }
    }

    func failQueue(_ error: ReservationError) {
        let items = queue
        queue = []
        for item in items {
            holds[item.hold] = nil
            item.continuation.resume(throwing: error)
        }
    }

    /// Confirmed holds leave the picture once the server's row is newer than when they were made.
    func pruneSettledHolds(_ event: UUID) {
        guard let book = table.book(event) else { return }
        for (id, hold) in holds where hold.event == event && hold.confirmed {
            if (book.ticketTypes[hold.ticketType]?.version ?? 0) > hold.versionAtRequest { holds[id] = nil }
        }
    }

    /// The book of `event` with the optimistic holds applied.
    func picture(_ event: UUID) -> AvailabilitySnapshot? {
        guard let book = table.book(event) else { return nil }
        var snapshot = book.snapshot
        let pending = holds.values.filter { $0.event == event }
        guard !pending.isEmpty else { return snapshot }
        snapshot.ticketTypes = snapshot.ticketTypes.map { type in
            let held = pending.filter { $0.ticketType == type.id }.reduce(0) { $0 + $1.quantity }
            guard held > 0 else { return type }
            let taken = min(held, type.available)
            return TicketTypeAvailability(
                id: type.id, name: type.name, priceCents: type.priceCents, capacity: type.capacity, sold: type.sold,
                reserved: type.reserved + taken, available: type.available - taken, version: type.version)
        }
        return snapshot
    }
}
