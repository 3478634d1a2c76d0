import Foundation
import Hummingbird
import MarqueeCore

/// `/api/events`: list, read, create, and the availability snapshot.
struct EventsController<Context: RequestContext>: Sendable {
    let events: any EventRepository
    let auth: Authenticator

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: list)
        group.post(use: create)
        group.get(":id", use: get)
        group.get(":id/availability", use: availability)
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        try JSONCoding.response(["events": try await events.list()])
    }

    @Sendable func get(_ request: Request, context: Context) async throws -> Response {
        let id = try eventID(context)
        guard let event = try await events.get(id) else { throw APIError.notFound("event_not_found", "no event \(id)") }
        return try JSONCoding.response(event)
    }

    @Sendable func availability(_ request: Request, context: Context) async throws -> Response {
        let id = try eventID(context)
        guard let snapshot = try await events.availability(id) else { throw APIError.notFound("event_not_found", "no event \(id)") }
        var response = try JSONCoding.response(snapshot)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        try await auth.requireServiceRole(request)
        let event = try await JSONCoding.decodeBody(NewEvent.self, from: request)
        if let problem = event.validationError() { throw problem }
        let created = try await events.create(event)
        var response = try JSONCoding.response(created, status: .created)
        response.headers[.location] = "/api/events/\(created.id.lowercased)"
        return response
    }

    private func eventID(_ context: Context) throws -> UUID {
        try uuidParameter(context, "id", what: "event")
    }
}

func uuidParameter(_ context: some RequestContext, _ name: String, what: String) throws -> UUID {
    let text = context.parameters.get(name) ?? ""
    guard let id = UUID(uuidString: text) else {
        throw APIError.badRequest("invalid_id", "'\(text)' is not a valid \(what) id (a UUID)")
    }
    return id
}
