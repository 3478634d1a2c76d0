import CoreMetrics
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MarqueeCore
import NIOCore
import Synchronization

/// What the web pages report, for `/metrics`.
public final class WebMetrics: Sendable {
    /// The kinds of client error a page reports; anything else is counted as `other`.
    public static let errorKinds = ["script", "promise", "message", "render", "network", "other"]
    private let counters: [String: CoreMetrics.Counter]

    public init(registry: MetricsRegistry = MetricsRegistry()) {
        counters = Dictionary(
            uniqueKeysWithValues: Self.errorKinds.map { ($0, registry.counter("marquee_client_errors_total", [("kind", $0)])) })
    }

    func recordClientError(kind: String) {
        (counters[kind] ?? counters["other"])?.increment()
    }
}

/// The buyer's pages and what they need from the server: `GET /` (events), `GET /events/:id` (ticket selection),
/// static files under `/assets/`, `GET /api/config`, the development login and the client error reports.
struct WebController: Sendable {
    static let maxErrorReportBytes = 8 * 1024
    static let anonKeyLifetime: TimeInterval = 30 * 24 * 3600
    static let devTokenLifetime: TimeInterval = 12 * 3600
    static let contentTypes: [String: String] = [
        "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml", "png": "image/png", "ico": "image/x-icon", "json": "application/json; charset=utf-8",
        "woff2": "font/woff2", "txt": "text/plain; charset=utf-8", "webmanifest": "application/manifest+json",
    ]
    static let pageHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        .cacheControl: "no-cache",
        .contentSecurityPolicy:
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "same-origin",
    ]

    let dependencies: AppDependencies
    let webDirectory: URL?
    let devLogin: Bool
    let logLimiter = LogLimiter(perMinute: 30)

    init(dependencies: AppDependencies, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.dependencies = dependencies
        self.webDirectory = try? ResourceLocator.locate("web", override: "MARQUEE_WEB_DIR")
        self.devLogin = dependencies.config.jwtSecret == nil || environment["MARQUEE_DEV_LOGIN"] == "1"
    }

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/") { request, _ in try self.page("index.html", request: request) }
        router.get("/events/:id") { request, context in try await self.eventPage(request, context: context) }
        router.get("/assets/:name") { request, context in try self.asset(request, context: context) }
        let api = router.group("api")
        api.get("config") { _, _ in try await self.clientConfig() }
        api.post("dev/login") { request, _ in try await self.login(request) }
        api.post("client-errors") { request, context in try await self.clientError(request, context: context) }
    }

    // MARK: pages and files

    func eventPage(_ request: Request, context: some RequestContext) async throws -> Response {
        guard let id = UUID(uuidString: context.parameters.get("id") ?? "") else { return notFoundPage() }
        do {
            guard let details = try await dependencies.events.get(id) else { return notFoundPage() }
            dependencies.analytics.pageView(id, soldOutTypes: details.ticketTypes.filter { $0.status == AvailabilityStatus.soldOut }.count)
        } catch {
            // a database hiccup still serves the page: it loads and polls the data on its own
        }
        return try page("event.html", request: request)
    }

    func page(_ name: String, request: Request) throws -> Response {
        guard let webDirectory else {
            throw APIError(.serviceUnavailable, "web_missing", "the web/ folder was not found; run from the project folder or set MARQUEE_WEB_DIR")
        }
        return try file(webDirectory.appendingPathComponent(name), request: request, headers: Self.pageHeaders)
    }

    func asset(_ request: Request, context: some RequestContext) throws -> Response {
        let name = context.parameters.get("name") ?? ""
        guard let webDirectory, Self.isSafeAssetName(name), let type = Self.contentTypes[Self.fileExtension(name)] else {
            throw APIError.notFound("not_found", "no asset \(name.prefix(80))")
        }
        let folder = webDirectory.appendingPathComponent("assets", isDirectory: true).standardizedFileURL
        let url = folder.appendingPathComponent(name).standardizedFileURL
        guard url.path.hasPrefix(folder.path + "/") else { throw APIError.notFound("not_found", "no asset \(name.prefix(80))") }
        return try file(
            url, request: request, headers: [.contentType: type, .cacheControl: "no-cache", HTTPField.Name("X-Content-Type-Options")!: "nosniff"])
    }

    /// A file with a weak ETag from its size and modification time; `304` when the browser already has it.
    func file(_ url: URL, request: Request, headers: HTTPFields) throws -> Response {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        guard let attributes, attributes[.type] as? FileAttributeType == .typeRegular,
            let data = FileManager.default.contents(atPath: url.path)
        else { throw APIError.notFound("not_found", "no such page or file") }
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let etag = "W/\"\(data.count)-\(Int64(modified * 1000))\""
        var headers = headers
        headers[.eTag] = etag
        if request.headers[.ifNoneMatch] == etag { return Response(status: .notModified, headers: headers) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func notFoundPage() -> Response {
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Event not found · Marquee</title><link rel="stylesheet" href="/assets/style.css"></head>
            <body><main class="page"><h1>Event not found</h1><p>There is no such event. <a href="/">See all events</a>.</p></main></body></html>
            """
        return Response(status: .notFound, headers: Self.pageHeaders, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// One plain file name: letters, digits, `.`, `_`, `-`, not starting with a dot, no `..`.
    static func isSafeAssetName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 100, !name.hasPrefix("."), !name.contains("..") else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
    }

    static func fileExtension(_ name: String) -> String {
        name.split(separator: ".").count > 1 ? String(name.split(separator: ".").last!).lowercased() : ""
    }

    // MARK: API for the pages

    func clientConfig() async throws -> Response {
        let anonKey = try await dependencies.authority.mint(sub: nil, role: .anon, lifetime: Self.anonKeyLifetime)
        let body: JSONObject = [
            "anon_key": .string(anonKey), "realtime_url": .string("/realtime/v1"),
            "hold_seconds": .int(Int64(dependencies.config.holdSeconds)),
            "max_quantity": .int(Int64(dependencies.config.maxQuantityPerReservation)), "dev_login": .bool(devLogin),
        ]
        return Self.json(.object(body), headers: [.cacheControl: "no-store"])
    }

    struct LoginBody: Decodable { var name: String }

    func login(_ request: Request) async throws -> Response {
        guard devLogin else { throw APIError.notFound("not_found", "no route for POST /api/dev/login") }
        let body = try await JSONCoding.decodeBody(LoginBody.self, from: request, limit: 4 * 1024)
        let sub = Self.userID(from: body.name)
        guard !sub.isEmpty else { throw APIError.badRequest("invalid_field", "'name' needs at least one letter or digit") }
        let display = String(Self.printable(body.name.trimmingCharacters(in: .whitespacesAndNewlines)).prefix(60))
        let token = try await dependencies.authority.mint(sub: sub, role: .authenticated, lifetime: Self.devTokenLifetime)
        let user: JSONObject = ["id": .string(sub), "name": .string(display)]
        return Self.json(
            .object(["token": .string(token), "user": .object(user), "expires_in": .int(Int64(Self.devTokenLifetime))]),
            headers: [.cacheControl: "no-store"])
    }

    /// `Ada Lovelace!` → `ada-lovelace`: lower-case ASCII letters and digits, other runs become one `-`, at most 32.
    static func userID(from name: String) -> String {
        var out = ""
        for scalar in name.lowercased().unicodeScalars {
            if scalar.isASCII && CharacterSet.alphanumerics.contains(scalar) {
                out.unicodeScalars.append(scalar)
            } else if !out.isEmpty && !out.hasSuffix("-") {
                out += "-"
            }
            if out.count >= 32 { break }
        }
        while out.hasSuffix("-") { out.removeLast() }
        return out
    }

    // MARK: client error reports

    struct ErrorReport: Decodable {
        var kind: String?
        var message: String?
        var page: String?
        var source: String?
        var line: Int?
        var column: Int?
        var stack: String?
    }

    func clientError(_ request: Request, context: some RequestContext) async throws -> Response {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: Self.maxErrorReportBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "body_too_large", "an error report must be at most \(Self.maxErrorReportBytes) bytes")
        }
        let report: ErrorReport
        do {
            report = try JSONCoding.decoder.decode(ErrorReport.self, from: Data(buffer.readableBytesView))
        } catch {
            throw APIError.badRequest("invalid_json", "an error report is a JSON object {kind, message, page, source, line, column, stack}")
        }
        let kind = report.kind.flatMap { WebMetrics.errorKinds.contains($0) ? $0 : nil } ?? "other"
        dependencies.webMetrics.recordClientError(kind: kind)
        switch logLimiter.take() {
        case .log(let suppressed):
            var metadata: Logger.Metadata = [
                "kind": "\(kind)", "message": "\(LogText.escape(Self.scrub(report.message ?? "", limit: 300), limit: 300))",
                "page": "\(LogText.escape(Self.pathOnly(report.page ?? "", limit: 200)))",
            ]
            if let source = report.source, !source.isEmpty { metadata["source"] = "\(LogText.escape(Self.pathOnly(source, limit: 200)))" }
            if let line = report.line { metadata["line"] = "\(line):\(report.column ?? 0)" }
            if let stack = report.stack, !stack.isEmpty {
                let top = stack.split(separator: "\n").prefix(4).map { LogText.escape(Self.scrub(String($0), limit: 200)) }
                metadata["stack"] = "\(top.joined(separator: " | "))"
            }
            if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
            context.logger.warning("client error reported", metadata: metadata)
        case .suppress:
            break
        }
        return Response(status: .noContent)
    }

    /// Removes what may identify a person or grant access: tokens, e-mail addresses, query strings and fragments of
    /// URLs, control characters; then truncates.
    static func scrub(_ text: String, limit: Int) -> String {
        var text = printable(text)
        let rules: [(String, String)] = [
            (#"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"#, "[token]"),
            (#"(?i)bearer\s+\S+"#, "Bearer [token]"),
            (#"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"#, "[email]"),
            (#"(?i)(apikey|access_token|token|key|password)=[^&\s"']*"#, "$1=[redacted]"),
            (#"(https?|wss?)://([^/\s?#"']+)([^\s?#"']*)[?#][^\s"']*"#, "$1://$2$3"),
        ]
        for (pattern, template) in rules {
            text = text.replacingOccurrences(of: pattern, with: template, options: .regularExpression)
        }
        return text.count > limit ? String(text.prefix(limit)) + "…" : text
    }

    /// The path of a URL or path, without origin, query or fragment.
    static func pathOnly(_ text: String, limit: Int) -> String {
        var path = text
        if let url = URL(string: text), url.scheme != nil { path = url.path.isEmpty ? "/" : url.path }
        if let cut = path.firstIndex(where: { $0 == "?" || $0 == "#" }) { path = String(path[..<cut]) }
        return scrub(path, limit: limit)
    }

    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { CharacterSet.controlCharacters.contains($0) ? " " : $0 }))
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: value.serialized())))
    }
}

/// Allows at most `perMinute` log lines a minute, so a broken page in many browsers cannot flood the log; the
/// metric still counts every report.
final class LogLimiter: Sendable {
    enum Decision { case log(suppressed: Int), suppress }
    private let perMinute: Int
    private let state = Mutex((windowStart: ContinuousClock.now, used: 0, suppressed: 0))

    init(perMinute: Int) { self.perMinute = perMinute }

    func take(now: ContinuousClock.Instant = .now) -> Decision {
        state.withLock { state in
            if now - state.windowStart >= .seconds(60) {
                state.windowStart = now
                state.used = 0
            }
            guard state.used < perMinute else {
                state.suppressed += 1
                return .suppress
            }
            state.used += 1
            let suppressed = state.suppressed
            state.suppressed = 0
            return .log(suppressed: suppressed)
        }
    }
}
