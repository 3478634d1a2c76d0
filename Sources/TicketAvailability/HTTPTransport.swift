import Foundation
import MarqueeCore
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// One HTTP request as the SDK makes it.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    public var url: URL
    public var headers: [String: String]
    public var body: Data?

    public init(method: String, url: URL, headers: [String: String] = [:], body: Data? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// The status and body of a response.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var body: Data

    public init(status: Int, body: Data) {
        self.status = status
        self.body = body
    }
}

/// How the SDK makes HTTP requests (snapshots, polling, reservations). Throwing means the server was not reached:
/// the SDK then treats the request as not delivered (and queues reservations).
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequest) async throws -> HTTPResponse
}

/// The live HTTP transport on Foundation's `URLSession`.
public struct URLSessionHTTPTransport: HTTPTransport {
    let session: URLSession
    let timeout: TimeInterval

    public init(session: URLSession = .shared, timeout: TimeInterval = 10) {
        self.session = session
        self.timeout = timeout
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        var urlRequest = URLRequest(url: request.url, timeoutInterval: timeout)
        urlRequest.httpMethod = request.method
        for (name, value) in request.headers { urlRequest.setValue(value, forHTTPHeaderField: name) }
        urlRequest.httpBody = request.body
        // Not `session.data(for:)`, and no `URLSessionTask.cancel()`: on Linux, FoundationNetworking deadlocks when
        // that cancel meets the request's completion (the cancel holds the Swift task's status lock while it waits
        // for the session's queue, which waits for that lock), and crashes when a task is cancelled just after it
        // was resumed. A cancelled request is answered at once with CancellationError; its data task runs to its
        // end (bounded by `timeout`) and its answer is dropped.
        let pending = PendingRequest()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard pending.wait(continuation) else { return }
                session.dataTask(with: urlRequest) { data, response, error in
                    if let error {
                        pending.finish(.failure(error))
                    } else {
                        pending.finish(.success(HTTPResponse(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: data ?? Data())))
                    }
                }.resume()
            }
        } onCancel: {
            pending.finish(.failure(CancellationError()))
        }
    }
}

/// The caller of one request, answered once: by the request's completion, or by its cancellation, whichever is first.
private final class PendingRequest: Sendable {
    private enum State {
        case starting
        case waiting(CheckedContinuation<HTTPResponse, any Error>)
        case finished
    }
    private let state = Mutex(State.starting)

    /// Keeps the caller waiting for the answer; false (the caller answered) when the request was already cancelled.
    func wait(_ continuation: CheckedContinuation<HTTPResponse, any Error>) -> Bool {
        let started = state.withLock { state in
            guard case .starting = state else { return false }
            state = .waiting(continuation)
            return true
        }
        if !started { continuation.resume(throwing: CancellationError()) }
        return started
    }

    func finish(_ result: Result<HTTPResponse, any Error>) {
        let waiting = state.withLock { state -> CheckedContinuation<HTTPResponse, any Error>? in
            defer { state = .finished }
            if case .waiting(let continuation) = state { return continuation }
            return nil
        }
        waiting?.resume(with: result)
    }
}

/// The REST calls of the SDK, on any ``HTTPTransport``.
struct MarqueeAPI: Sendable {
    let baseURL: URL
    let http: any HTTPTransport

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func url(_ path: String) -> URL {
        var text = baseURL.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        return URL(string: text + path)!
    }

    /// `GET /api/events/{id}/availability`.
    func availability(event: UUID) async throws -> AvailabilitySnapshot {
        let response = try await http.send(HTTPRequest(method: "GET", url: url("/api/events/\(event.lowercased)/availability")))
        guard response.status == 200 else { throw Failure(description: "HTTP \(response.status)") }
        guard let object = try? JSONValue.parse(response.body).objectValue, let rows = object["ticket_types"]?.arrayValue else {
            throw Failure(description: "the availability response is not {event_id, ticket_types}")
        }
        var types: [TicketTypeAvailability] = []
        for row in rows {
            guard let record = row.objectValue, let type = AvailabilityBook.ticketType(from: record) else {
                throw Failure(description: "a ticket type in the availability response is malformed")
            }
            types.append(type)
        }
        return AvailabilitySnapshot(eventID: event, ticketTypes: types)
    }

    enum ReserveOutcome: Sendable {
        case reserved(Reservation)
        case refused(ReservationError)
    }

    /// `POST /api/events/{id}/reservations`; throws only when the server was not reached (or answered gibberish).
    func reserve(event: UUID, ticketType: UUID, quantity: Int, idempotencyKey: String, token: String) async throws -> ReserveOutcome {
        let body: JSONObject = ["ticket_type_id": .string(ticketType.lowercased), "quantity": .int(Int64(quantity))]
        let request = HTTPRequest(
            method: "POST", url: url("/api/events/\(event.lowercased)/reservations"),
            headers: ["Authorization": "Bearer \(token)", "Idempotency-Key": idempotencyKey, "Content-Type": "application/json"],
            body: Data(JSONValue.object(body).serialized().utf8))
        let response = try await http.send(request)
        let json = try? JSONValue.parse(response.body)
        switch response.status {
        case 200, 201:
            guard let object = json?.objectValue, let reservation = Self.reservation(object) else {
                throw Failure(description: "the reservation response is malformed")
            }
            return .reserved(reservation)
        case 500...:
            // the server may be restarting; the idempotency key makes a retry safe
            throw Failure(description: "HTTP \(response.status)")
        default:
            let error = json?["error"]
            let code = error?["code"]?.stringValue ?? "http_\(response.status)"
            let message = error?["message"]?.stringValue ?? "HTTP \(response.status)"
            let available = Int(error?["available"]?.intValue ?? 0)
            switch (response.status, code) {
            case (409, "sold_out"): return .refused(.soldOut(available: available))
            case (409, "insufficient_availability"): return .refused(.insufficientAvailability(available: available, message: message))
            default: return .refused(.rejected(status: response.status, code: code, message: message))
            }
        }
    }

    static func reservation(_ object: JSONObject) -> Reservation? {
        guard let id = object["id"]?.stringValue.flatMap(UUID.init(uuidString:)),
            let event = object["event_id"]?.stringValue.flatMap(UUID.init(uuidString:)),
            let type = object["ticket_type_id"]?.stringValue.flatMap(UUID.init(uuidString:)),
            let quantity = object["quantity"]?.intValue,
            let status = object["status"]?.stringValue.flatMap(ReservationStatus.init(rawValue:))
        else { return nil }
        let expires = object["hold_expires_at"]?.stringValue.flatMap(parseDate)
        return Reservation(id: id, eventID: event, ticketTypeID: type, quantity: Int(quantity), status: status, holdExpiresAt: expires)
    }

    static func parseDate(_ text: String) -> Date? {
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}
