import Foundation
import Hummingbird
import Logging
import MarqueeCore
import PostgresNIO

/// An API error: `{"error":{"code":"…","message":"…"}}` with a fitting status; `details` adds machine-readable facts
/// such as the seats still `available`.
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var details: [String: Int] = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, details: [String: Int] = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
    }

    /// The JSON body.
    public var body: String {
        var error: JSONObject = ["code": .string(code), "message": .string(message)]
        for (key, value) in details.sorted(by: { $0.key < $1.key }) { error[key] = .int(Int64(value)) }
        return JSONValue.object(["error": .object(error)]).serialized()
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func badRequest(_ code: String, _ message: String) -> APIError { APIError(.badRequest, code, message) }
    static func notFound(_ code: String, _ message: String) -> APIError { APIError(.notFound, code, message) }
}

/// Turns every error into the API's JSON error shape, so that clients never have to parse HTML or empty bodies.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    var metrics: HubMetrics? = nil

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await convert(request, context: context, next: next)
        } catch let error as APIError {
            metrics?.error(error.code)
            throw error
        }
    }

    private func convert(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            let code: String
            switch error.status {
            case .notFound: code = "not_found"
            case .contentTooLarge: code = "body_too_large"
            case .methodNotAllowed: code = "method_not_allowed"
            default: code = error.status.code < 500 ? "bad_request" : "internal_error"
            }
            let message = error.body ?? (error.status == .notFound ? "no route for \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            throw APIError(error.status, code, message)
        } catch let error as TokenError {
            throw APIError(.unauthorized, error.apiCode, error.message)
        } catch {
            if let mapped = DatabaseErrorMapping.apiError(for: error) {
                if mapped.status == .serviceUnavailable {
                    context.logger.warning(
                        "database unavailable", metadata: ["path": "\(LogText.escape(request.uri.path))", "error": "\(describeError(error))"])
                }
                throw mapped
            }
            context.logger.error("request failed", metadata: ["path": "\(LogText.escape(request.uri.path))", "error": "\(describeError(error))"])
            throw APIError(.internalServerError, "internal_error", "the server failed to handle the request; it has been logged")
        }
    }
}

/// Maps the database's named errors (see db/migrations/0002_count_triggers.sql) to API errors.
enum DatabaseErrorMapping {
    static func psqlError(_ error: any Error) -> PSQLError? {
        if let error = error as? PSQLError { return error }
        if let error = error as? PostgresTransactionError {
            return (error.closureError ?? error.commitError).flatMap(psqlError)
        }
        return nil
    }

    static func sqlState(_ error: any Error) -> String? {
        psqlError(error)?.serverInfo?[.sqlState]
    }

    static let unavailable = APIError(.serviceUnavailable, "database_unavailable", "the database is not reachable right now; try again shortly")

    static func apiError(for error: any Error) -> APIError? {
        if let timeout = error as? DatabaseTimeout {
            return APIError(
                .serviceUnavailable, "database_timeout", "the database did not answer within \(timeout.limit); try again shortly")
        }
        if error is DatabaseConnectionClosed { return unavailable }
        guard let psql = psqlError(error), let info = psql.serverInfo, let state = info[.sqlState] else {
            let lost: [PSQLError.Code] = [.connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed]
            if let psql = psqlError(error), lost.contains(psql.code) { return unavailable }
            return nil
        }
        let detail = info[.detail] ?? ""
        let available = detail.hasPrefix("available=") ? Int(detail.dropFirst("available=".count)) : nil
        switch state {
        case "MQ001":
            return APIError(.conflict, "sold_out", "this ticket type is sold out", details: ["available": available ?? 0])
        case "MQ002":
            let left = available ?? 0
            return APIError(
                .conflict, "insufficient_availability", "only \(left) ticket\(left == 1 ? "" : "s") left; ask for \(left) or fewer",
                details: ["available": left])
        case "MQ003": return APIError(.conflict, "invalid_transition", detail.isEmpty ? "that change of status is not allowed" : detail)
        case "MQ004": return APIError(.conflict, "hold_expired", "the hold has expired; reserve again")
        case "MQ005": return APIError(.badRequest, "immutable_field", detail)
        case "MQ006": return APIError(.notFound, "ticket_type_not_found", detail)
        case "MQ007":
            let numbers = detail.split(separator: " ").compactMap { part -> (String, Int)? in
                let kv = part.split(separator: "=")
                guard kv.count == 2, let n = Int(kv[1]) else { return nil }
                return (String(kv[0]), n)
            }
            let values = Dictionary(numbers, uniquingKeysWith: { a, _ in a })
            let limit = values["limit"] ?? 0
            return APIError(
                .conflict, "per_user_limit",
                "one person may hold or buy at most \(limit) of this ticket type; you already have \(values["held"] ?? 0)",
                details: ["limit": limit])
        case "23503" where info[.constraintName] == "tickets_event_id_fkey":
            return APIError(.notFound, "event_not_found", "no such event")
        case "23503": return APIError(.notFound, "ticket_type_not_found", "no such ticket type in this event")
        case "23514":
            return APIError(.conflict, "constraint_violation", "the change would break a rule of the data: \(info[.constraintName] ?? "check")")
        case "57014":
            // statement_timeout (DatabaseDeadline.statementTimeout) ended the statement
            return APIError(.serviceUnavailable, "database_timeout", "the database did not answer in time; try again shortly")
        case let state where state.hasPrefix("57P") || state.hasPrefix("08"):
            // the database is shutting down, restarting, or the connection broke
            return unavailable
        case "22P02": return APIError(.badRequest, "invalid_field", "a value has the wrong format")
        case let state where state.hasPrefix("22"):
            // data exceptions: a value the database cannot store (e.g. a NUL character in text)
            return APIError(.badRequest, "invalid_field", "a value cannot be stored: \(info[.message] ?? "invalid data")")
        default: return nil
        }
    }
}

/// A one-line description of an error for logs and the command line; database errors show PostgreSQL's own words.
public func describeError(_ error: any Error) -> String {
    if let psql = DatabaseErrorMapping.psqlError(error) {
        if let info = psql.serverInfo {
            let state = info[.sqlState] ?? "?"
            var text = "database error \(state): \(info[.message] ?? "")"
            if let detail = info[.detail] { text += " (\(detail))" }
            return text
        }
        return "database error: \(psql.code)\(psql.underlying.map { ": \($0)" } ?? "")"
    }
    return String(describing: error)
}
