import Foundation
import Logging
import MarqueeCore

/// Everything `marquee serve` needs; flags win over the environment.
public struct MarqueeConfig: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    /// `nil`: run the embedded cluster under `dataDirectory`.
    public var databaseURL: String?
    public var dataDirectory: String = ".marquee"
    public var jwtSecret: String?
    public var holdSeconds: Int = 600
    public var maxQuantityPerReservation: Int = 10
    public var logLevel: Logger.Level = .info
    /// Names this server's replication slot; nodes sharing a database need different names (`MARQUEE_NODE`).
    public var nodeName: String = "main"
    /// How long before a hold expires its owner is warned on `user:<id>:reservations` (`MARQUEE_HOLD_WARNING_SECONDS`).
    public var holdWarningSeconds: Int = 60
    /// How long stored broadcast messages are kept (`MARQUEE_MESSAGE_RETENTION_SECONDS`, default 3 days).
    public var messageRetentionSeconds: Int = 3 * 24 * 3600
    /// How long a request, a join or a background pass waits for the database before giving up with 503
    /// `database_timeout` (`MARQUEE_DATABASE_TIMEOUT_SECONDS`, default 5); see ``DatabaseDeadline``.
    public var databaseTimeout: Duration = .seconds(5)
    /// The coalescing window of availability rows in milliseconds (`MARQUEE_COALESCE_MS`; 0 sends every version):
    /// a coalesced binding gets a ticket type's newest version at most once per window (docs/realtime-extensions.md).
    public var coalesceMilliseconds: Int = 100
    /// More tables anyone may subscribe to, every column visible (`MARQUEE_PUBLIC_TABLES=public.scores,public.news`).
    /// Add them to the `marquee` publication yourself (with `REPLICA IDENTITY FULL` for `old_record`); they must exist
    /// when the server starts.
    public var publicTables: [String] = []

    /// How the change feed reads its slot (`MARQUEE_CHANGE_FEED`): `streaming` over the replication protocol (the
    /// default; falls back to polling when the database refuses replication connections) or `polling` over SQL.
    public var changeFeedMode: ChangeFeedStatus.Mode = .streaming

    /// Limits of the realtime endpoint and the reservations API (docs/security.md).
    public var limits = Limits()

    public struct Limits: Sendable {
        public var maxChannelsPerConnection = 100
        public var joinsPerSecond = 10.0
        public var messagesPerSecond = 100.0
        /// TCP connections open at once, HTTP and WebSocket together; nil: derived from the open-file limit at start
        /// (``FileLimit/socketBudget(descriptors:)``).
        public var maxConnections: Int?
        /// TCP connections open at once from one address, HTTP and WebSocket together (trusted proxies are exempt), and
        /// realtime sockets per client address (behind a trusted proxy, the forwarded one).
        public var maxConnectionsPerIP = 1000
        /// How long a new connection may take to send its first request head (`MARQUEE_REQUEST_HEAD_TIMEOUT_SECONDS`).
        public var requestHeadTimeout: Duration = .seconds(10)
        /// How long an HTTP connection may stay idle between requests (`MARQUEE_HTTP_IDLE_TIMEOUT_SECONDS`).
        public var httpIdleTimeout: Duration = .seconds(60)
        /// Proxies whose `X-Forwarded-For` / `Forwarded` headers name the client (`MARQUEE_TRUSTED_PROXIES`).
        public var trustedProxies = TrustedProxies.none
        public var maxConnectionsPerUser = 20
        public var broadcastsPerSecondPerTopic = 100.0
        public var maxFrameBytes = 1 << 20
        public var reservationsPerMinutePerUser = 60.0
        /// Bytes per second one realtime socket may send before reading it pauses.
        public var inboundBytesPerSecond = 256.0 * 1024
        /// Bytes of frames that may wait for one realtime socket before it is closed to resync (1013).
        public var outboxBytes = 8 << 20
        /// The largest client broadcast and presence frames.
        public var maxBroadcastBytes = 64 * 1024
        public var maxPresenceBytes = 4 * 1024
        public init() {}
    }

    public init() {}

    /// Defaults overridden by `DATABASE_URL`, `MARQUEE_JWT_SECRET`, `MARQUEE_HOLD_SECONDS`, `MARQUEE_LOG_LEVEL`,
    /// `MARQUEE_DATA_DIR`.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> MarqueeConfig {
        var config = MarqueeConfig()
        if let url = environment["DATABASE_URL"], !url.isEmpty { config.databaseURL = url }
        if let secret = environment["MARQUEE_JWT_SECRET"], !secret.isEmpty { config.jwtSecret = secret }
        if let dir = environment["MARQUEE_DATA_DIR"], !dir.isEmpty { config.dataDirectory = dir }
        if let node = environment["MARQUEE_NODE"], !node.isEmpty { config.nodeName = node }
        if let text = environment["MARQUEE_HOLD_WARNING_SECONDS"] {
            guard let seconds = Int(text), seconds >= 0 else {
                throw ConfigError(message: "MARQUEE_HOLD_WARNING_SECONDS must be a whole number of seconds (0 turns warnings off), not '\(text)'")
            }
            config.holdWarningSeconds = seconds
        }
        if let text = environment["MARQUEE_MESSAGE_RETENTION_SECONDS"] {
            guard let seconds = Int(text), seconds > 0 else {
                throw ConfigError(message: "MARQUEE_MESSAGE_RETENTION_SECONDS must be a whole number of seconds above 0, not '\(text)'")
            }
            config.messageRetentionSeconds = seconds
        }
        if let text = environment["MARQUEE_COALESCE_MS"] {
            guard let milliseconds = Int(text), milliseconds >= 0 else {
                throw ConfigError(message: "MARQUEE_COALESCE_MS must be a whole number of milliseconds (0 turns coalescing off), not '\(text)'")
            }
            config.coalesceMilliseconds = milliseconds
        }
        if let text = environment["MARQUEE_HOLD_SECONDS"] {
            guard let seconds = Int(text), seconds > 0 else {
                throw ConfigError(message: "MARQUEE_HOLD_SECONDS must be a whole number of seconds above 0, not '\(text)'")
            }
            config.holdSeconds = seconds
        }
        func number(_ name: String, _ apply: (Double) -> Void) throws {
            guard let text = environment[name] else { return }
            guard let value = Double(text), value > 0 else { throw ConfigError(message: "\(name) must be a number above 0, not '\(text)'") }
            apply(value)
        }
        try number("MARQUEE_DATABASE_TIMEOUT_SECONDS") { config.databaseTimeout = .milliseconds(Int(($0 * 1000).rounded(.up))) }
        try number("MARQUEE_REQUEST_HEAD_TIMEOUT_SECONDS") { config.limits.requestHeadTimeout = .milliseconds(Int(($0 * 1000).rounded(.up))) }
        try number("MARQUEE_HTTP_IDLE_TIMEOUT_SECONDS") { config.limits.httpIdleTimeout = .milliseconds(Int(($0 * 1000).rounded(.up))) }
        if let text = environment["MARQUEE_TRUSTED_PROXIES"] {
            do {
                config.limits.trustedProxies = try TrustedProxies(parsing: text)
            } catch {
                throw ConfigError(
                    message: "MARQUEE_TRUSTED_PROXIES must be a comma-separated list of CIDR blocks such as 10.0.0.0/8,::1/128: \(error)")
            }
        }
        try number("MARQUEE_MAX_CHANNELS") { config.limits.maxChannelsPerConnection = Int($0) }
        try number("MARQUEE_JOINS_PER_SECOND") { config.limits.joinsPerSecond = $0 }
        try number("MARQUEE_MESSAGES_PER_SECOND") { config.limits.messagesPerSecond = $0 }
        func count(_ name: String, _ apply: (Int) -> Void) throws {
            guard let text = environment[name] else { return }
            guard let value = Int(text), value > 0 else { throw ConfigError(message: "\(name) must be a whole number above 0, not '\(text)'") }
            apply(value)
        }
        try count("MARQUEE_MAX_CONNECTIONS") { config.limits.maxConnections = $0 }
        try count("MARQUEE_MAX_CONNECTIONS_PER_IP") { config.limits.maxConnectionsPerIP = $0 }
        try number("MARQUEE_MAX_CONNECTIONS_PER_USER") { config.limits.maxConnectionsPerUser = Int($0) }
        try number("MARQUEE_BROADCASTS_PER_SECOND") { config.limits.broadcastsPerSecondPerTopic = $0 }
        try number("MARQUEE_MAX_FRAME_BYTES") { config.limits.maxFrameBytes = Int($0) }
        try number("MARQUEE_RESERVATIONS_PER_MINUTE") { config.limits.reservationsPerMinutePerUser = $0 }
        try number("MARQUEE_INBOUND_BYTES_PER_SECOND") { config.limits.inboundBytesPerSecond = $0 }
        try number("MARQUEE_OUTBOX_BYTES") { config.limits.outboxBytes = Int($0) }
        try number("MARQUEE_MAX_BROADCAST_BYTES") { config.limits.maxBroadcastBytes = Int($0) }
        try number("MARQUEE_MAX_PRESENCE_BYTES") { config.limits.maxPresenceBytes = Int($0) }
        if let text = environment["MARQUEE_PUBLIC_TABLES"] {
            let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for name in names {
                let parts = name.split(separator: ".", omittingEmptySubsequences: false)
                guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } }) else {
                    throw ConfigError(message: "MARQUEE_PUBLIC_TABLES names tables as schema.table, separated by commas; '\(name)' is not one")
                }
            }
            config.publicTables = names
        }
        if let text = environment["MARQUEE_CHANGE_FEED"], !text.isEmpty {
            guard let mode = ChangeFeedStatus.Mode(rawValue: text.lowercased()) else {
                throw ConfigError(message: "MARQUEE_CHANGE_FEED must be streaming (the default) or polling, not '\(text)'")
            }
            config.changeFeedMode = mode
        }
        if let text = environment["MARQUEE_LOG_LEVEL"] {
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ConfigError(message: "MARQUEE_LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
            }
            config.logLevel = level
        }
        return config
    }
}

public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}
