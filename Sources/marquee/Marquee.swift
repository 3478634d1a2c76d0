import ArgumentParser
import Foundation
import Logging
import MarqueeServer

@main
struct Marquee: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "marquee",
        abstract: "Real-time ticket availability over the Supabase Realtime protocol.",
        subcommands: [Serve.self, Migrate.self, Seed.self, Token.self, Database.self, Watch.self])
}

/// Options shared by the commands that talk to the database.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "PostgreSQL URL (default: $DATABASE_URL, or the embedded cluster in the data directory).")
    var databaseURL: String?

    @Option(help: "Where the embedded cluster, the generated secret and other state live (default: $MARQUEE_DATA_DIR or .marquee).")
    var dataDir: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: $MARQUEE_LOG_LEVEL or info).")
    var logLevel: String?

    func config() throws -> MarqueeConfig {
        var config = try MarqueeConfig.fromEnvironment()
        if let databaseURL { config.databaseURL = databaseURL }
        if let dataDir { config.dataDirectory = dataDir }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
                throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
            }
            config.logLevel = level
        }
        return config
    }

    func logger(_ config: MarqueeConfig, label: String = "marquee") -> Logger {
        LogFormat.bootstrap(ProcessInfo.processInfo.environment["MARQUEE_LOG_FORMAT"])
        var logger = Logger(label: label)
        logger.logLevel = config.logLevel
        return logger
    }
}

/// Connects to `DATABASE_URL`, or starts (or reuses) the embedded cluster.
func resolveDatabase(_ config: MarqueeConfig, logger: Logger) async throws -> (DatabaseURL, EmbeddedPostgres?) {
    if let url = config.databaseURL { return (try DatabaseURL(parsing: url), nil) }
    let embedded = EmbeddedPostgres(dataDirectory: config.dataDirectory + "", logger: logger)
    let url = try await embedded.start()
    return (try DatabaseURL(parsing: url), embedded)
}

func fail(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("error: \(describeError(error))\n".utf8))
    Foundation.exit(1)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (HTTP API, realtime, pages).")

    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on.") var port: Int = 8080
    @Flag(help: "Create the demo events first if they do not exist.") var demo = false
    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        var config = try options.config()
        config.host = host
        config.port = port
        let logger = options.logger(config)
        do {
            let (database, embedded) = try await resolveDatabase(config, logger: logger)
            let seedDemo = demo
            let app = try await buildApplication(
                config: config, database: database, embedded: embedded, logger: logger,
                onServerRunning: { channel in
                    if seedDemo {
                        do { try await DemoSeeder.seed(database, logger: logger) } catch { logger.error("demo seed failed: \(describeError(error))") }
                    }
                    let address = channel.localAddress?.port.map { "http://\(host):\($0)" } ?? "http://\(host):\(port)"
                    FileHandle.standardOutput.write(Data("listening on \(address)\n".utf8))
                })
            do {
                try await app.runService()
            } catch {
                try? await embedded?.stop()
                throw error
            }
        } catch {
            fail(error)
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the database migrations.")
    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        let config = try options.config()
        let logger = options.logger(config)
        do {
            let (database, embedded) = try await resolveDatabase(config, logger: logger)
            let applied = try await Migrator(directory: try Migrator.locateDirectory()).migrate(database, logger: logger)
            print(applied.isEmpty ? "up to date" : "applied \(applied.joined(separator: ", "))")
            try await embedded?.stop()
        } catch {
            fail(error)
        }
    }
}

struct Seed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create data.")
    @Flag(help: "Create the demo events (idempotent).") var demo = false
    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        guard demo else { throw ValidationError("say what to seed: --demo") }
        let config = try options.config()
        let logger = options.logger(config)
        do {
            let (database, embedded) = try await resolveDatabase(config, logger: logger)
            try await Migrator(directory: try Migrator.locateDirectory()).migrate(database, logger: logger)
            let created = try await DemoSeeder.seed(database, logger: logger)
            print(created == 0 ? "demo events already exist" : "created \(created) demo events")
            try await embedded?.stop()
        } catch {
            fail(error)
        }
    }
}

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a signed JWT for local use.")
    @Option(help: "Sign in as this user (role authenticated).") var sub: String?
    @Flag(help: "An anonymous token (role anon).") var anon = false
    @Flag(help: "A service token (role service_role).") var service = false
    @Option(help: "Lifetime in seconds.") var ttl: Int = 3600
    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        let chosen = [sub != nil, anon, service].filter { $0 }.count
        guard chosen == 1 else { throw ValidationError("choose exactly one of --sub USER, --anon, --service") }
        guard ttl > 0 else { throw ValidationError("--ttl must be above 0") }
        let config = try options.config()
        let secret = try SecretStore.loadOrCreate(explicit: config.jwtSecret, dataDirectory: config.dataDirectory, logger: options.logger(config))
        let authority = await TokenAuthority(secret: secret)
        let role: Role = anon ? .anon : service ? .serviceRole : .authenticated
        print(try await authority.mint(sub: sub, role: role, lifetime: TimeInterval(ttl)))
    }
}

struct Database: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Manage the embedded PostgreSQL cluster.", subcommands: [Start.self, Stop.self])

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start the embedded cluster and print its URL; it keeps running.")
        @Option(help: "Listen on this port (default: the port of the last run when it is free, else a free one).") var port: Int?
        @OptionGroup var options: DatabaseOptions

        func run() async throws {
            let config = try options.config()
            do {
                let embedded = EmbeddedPostgres(dataDirectory: config.dataDirectory, logger: options.logger(config))
                print(try await embedded.start(preferredPort: port))
            } catch {
                fail(error)
            }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the embedded cluster.")
        @OptionGroup var options: DatabaseOptions

        func run() async throws {
            let config = try options.config()
            do {
                let embedded = EmbeddedPostgres(dataDirectory: config.dataDirectory, logger: options.logger(config))
                try await embedded.stopRunning()
            } catch {
                fail(error)
            }
        }
    }
}
