import ArgumentParser
import Foundation
import MarqueeCore
import MarqueeServer
import TicketAvailability

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show an event's ticket counts live in the terminal.")

    @Argument(help: "The event id.") var eventID: String
    @Option(help: "The server's base URL.") var url: String = "http://127.0.0.1:8080"
    @Option(help: "An API key (JWT); default: an anonymous token signed with the local development secret.") var token: String?
    @Flag(help: "Print one line per update instead of redrawing the screen.") var plain = false
    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        guard let id = UUID(uuidString: eventID) else { throw ValidationError("'\(eventID)' is not an event id (a UUID)") }
        let apiKey: String
        if let token {
            apiKey = token
        } else {
            let config = try options.config()
            let secret = try SecretStore.loadOrCreate(explicit: config.jwtSecret, dataDirectory: config.dataDirectory, logger: options.logger(config))
            apiKey = try await TokenAuthority(secret: secret).mint(sub: nil, role: .anon, lifetime: 24 * 3600)
        }
        let title = (try? await eventName(id)) ?? "event \(id.lowercased)"
        var status = "connecting"
        var latest: AvailabilitySnapshot?
        for await update in EventWatcher(baseURL: url, apiKey: apiKey, eventID: id).updates() {
            switch update {
            case .status(let new):
                switch new {
                case .connecting: status = "connecting"
                case .connected: status = "live"
                case .reconnecting(let attempt): status = "reconnecting (attempt \(attempt))"
                case .polling: status = "polling (realtime unavailable)"
                case .disconnected(let reason): status = "disconnected: \(reason)"
                }
            case .availability(let snapshot):
                latest = snapshot
            }
            draw(title: title, status: status, snapshot: latest)
        }
    }

    func eventName(_ id: UUID) async throws -> String? {
        guard let endpoint = URL(string: "\(url)/api/events/\(id.lowercased)") else { return nil }
        let (data, _) = try await URLSession.shared.data(from: endpoint)
        return try JSONValue.parse(data)["name"]?.stringValue
    }

    func draw(title: String, status: String, snapshot: AvailabilitySnapshot?) {
        var out = plain ? "" : "\u{1B}[2J\u{1B}[H"
        out += "\(title) — \(status)\n"
        for type in snapshot?.ticketTypes ?? [] {
            let label: String
            switch type.status {
            case .available: label = "available"
            case .fewLeft: label = "few left"
            case .soldOut: label = "SOLD OUT"
            }
            let name = type.name.padding(toLength: 24, withPad: " ", startingAt: 0)
            out +=
                "  \(name) \(String(format: "%6d", type.available)) / \(String(format: "%-6d", type.capacity)) \(label)  (sold \(type.sold), held \(type.reserved), v\(type.version))\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
