import Foundation
import HTTPTypes
import Hummingbird

extension Request {
    /// The bearer token of the `Authorization` header, or the `apikey` header as Supabase clients send it.
    var bearerToken: String? {
        if let header = headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
        }
        if let apikey = headers[HTTPField.Name("apikey")!] { return apikey }
        return nil
    }
}

struct Authenticator: Sendable {
    let authority: TokenAuthority

    /// The verified claims of the request's token; 401 with the reason otherwise.
    func claims(_ request: Request) async throws -> AccessClaims {
        guard let token = request.bearerToken else {
            throw APIError(.unauthorized, "missing_token", "send a token in the Authorization header: 'Authorization: Bearer <JWT>'")
        }
        do {
            return try await authority.verify(token)
        } catch {
            throw APIError(.unauthorized, error.apiCode, error.message)
        }
    }

    /// The signed-in user; anonymous tokens are refused.
    func user(_ request: Request) async throws -> (id: String, claims: AccessClaims) {
        let claims = try await claims(request)
        guard let sub = claims.sub, !sub.isEmpty, claims.role != .anon else {
            throw APIError(.unauthorized, "login_required", "this needs a signed-in user's token (with a 'sub' claim), not an anonymous one")
        }
        return (sub, claims)
    }

    func requireServiceRole(_ request: Request) async throws {
        let claims = try await claims(request)
        guard claims.role == .serviceRole else {
            throw APIError(.forbidden, "service_role_required", "this needs a token with the service_role role")
        }
    }
}
