import Foundation
import JWTKit
import Logging
import MarqueeCore

/// The roles a token may carry, as in Supabase.
public enum Role: String, Sendable, Codable {
    case anon
    case authenticated
    case serviceRole = "service_role"
}

/// The claims Marquee reads: `sub` is the user, `role` the role; `exp` and `nbf` are checked when present.
public struct AccessClaims: JWTPayload, Sendable, Equatable {
    public var sub: String?
    public var role: Role
    public var exp: ExpirationClaim?
    public var nbf: NotBeforeClaim?
    public var iat: IssuedAtClaim?

    public init(sub: String?, role: Role, expiresAt: Date?, issuedAt: Date = Date()) {
        self.sub = sub
        self.role = role
        self.exp = expiresAt.map { ExpirationClaim(value: $0) }
        self.iat = IssuedAtClaim(value: issuedAt)
    }

    /// `exp` and `nbf` are checked by `TokenAuthority.verify`, which says which one failed.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Why a token was refused, in words a person can act on.
public struct TokenError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case missing = "missing_token"
        case expired = "token_expired"
        case notYetValid = "token_not_yet_valid"
        case invalid = "invalid_token"
        case badClaims = "invalid_claims"
    }

    public var code: Code
    public var message: String
    public var description: String { message }

    /// The HTTP API's error code: a token with unusable claims is an invalid token there.
    public var apiCode: String { code == .badClaims ? Code.invalid.rawValue : code.rawValue }
}

/// Signs and verifies HS256 tokens with the server's secret.
public struct TokenAuthority: Sendable {
    let keys: JWTKeyCollection

    public init(secret: String) async {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.keys = keys
    }

    /// Whether the token's middle part is a JSON object: then a decoding failure is about its claims, not its form.
    static func hasReadablePayload(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return false }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), case .object = try? JSONValue.parse(data) else { return false }
        return true
    }

    public func sign(_ claims: AccessClaims) async throws -> String {
        try await keys.sign(claims)
    }

    /// Mints a token for local use.
    public func mint(sub: String?, role: Role, lifetime: TimeInterval?) async throws -> String {
        try await sign(AccessClaims(sub: sub, role: role, expiresAt: lifetime.map { Date().addingTimeInterval($0) }))
    }

    public func verify(_ token: String) async throws(TokenError) -> AccessClaims {
        let token = token.trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty else { throw TokenError(code: .missing, message: "no token was given") }
        let claims: AccessClaims
        do {
            claims = try await keys.verify(token, as: AccessClaims.self)
        } catch let error as JWTError {
            switch error.errorType {
            case .signatureVerificationFailed:
                throw TokenError(code: .invalid, message: "the token's signature does not match this server's secret")
            case .malformedToken:
                if Self.hasReadablePayload(token) {
                    throw TokenError(code: .badClaims, message: "the token needs a role claim of anon, authenticated or service_role")
                }
                throw TokenError(code: .invalid, message: "the token is not a well-formed JWT")
            default:
                throw TokenError(code: .invalid, message: "the token was refused: \(error.errorType)")
            }
        } catch {
            throw TokenError(code: .badClaims, message: "the token needs a role claim of anon, authenticated or service_role")
        }
        let now = Date()
        if let exp = claims.exp?.value, exp <= now {
            throw TokenError(code: .expired, message: "the token has expired \(Int(now.timeIntervalSince(exp))) seconds ago; get a new one")
        }
        if let nbf = claims.nbf?.value, nbf > now {
            throw TokenError(code: .notYetValid, message: "the token is not valid yet (nbf is \(Int(nbf.timeIntervalSince(now))) seconds away)")
        }
        return claims
    }
}

/// Loads `MARQUEE_JWT_SECRET`, or in development generates a secret once and keeps it in the data directory.
public enum SecretStore {
    public static func loadOrCreate(explicit: String?, dataDirectory: String, logger: Logger) throws -> String {
        if let explicit, !explicit.isEmpty {
            guard explicit.utf8.count >= 32 else {
                throw TokenError(code: .invalid, message: "MARQUEE_JWT_SECRET must be at least 32 bytes long")
            }
            return explicit
        }
        let dir = URL(fileURLWithPath: dataDirectory, isDirectory: true)
        let file = dir.appendingPathComponent("jwt-secret")
        if let existing = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), existing.utf8.count >= 32 {
            return existing
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<48).map { _ in String(UInt8.random(in: 0...15, using: &generator), radix: 16) }.joined()
        try secret.write(to: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        logger.warning("MARQUEE_JWT_SECRET is not set: generated a development secret in \(file.path); set it in production")
        return secret
    }
}
