import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// An error of the embedded database, with a message that says what to do.
public struct EmbeddedPostgresError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case binariesMissing = "postgres_binaries_missing"
        case initFailed = "initdb_failed"
        case startFailed = "start_failed"
        case stopFailed = "stop_failed"
        case unprivilegedUser = "unprivileged_user"
        case corrupt = "cluster_state"
    }

    public var code: Code
    public var message: String
    public var description: String { message }
}

/// A private PostgreSQL cluster kept under Marquee's data directory.
///
/// First use runs `initdb` (password authentication, `wal_level=logical`, TCP on 127.0.0.1 only); `start()` starts it
/// on a free port unless it is already running, and `stop()` stops it if this process started it. As root, the
/// cluster is owned and run by the unprivileged system user `marquee`, since PostgreSQL refuses to run as root.
public actor EmbeddedPostgres {
    public static let databaseName = "marquee"
    public static let userName = "marquee"
    static let systemUser = "marquee"

    public let dataDirectory: URL
    let logger: Logger
    private var clusterDirectory: URL
    private var binDirectory: String = ""
    private var startedHere = false
    private(set) public var databaseURL: String?

    public init(dataDirectory: String, logger: Logger) {
        let url = URL(fileURLWithPath: dataDirectory, isDirectory: true).standardizedFileURL
        self.dataDirectory = url
        self.clusterDirectory = url.appendingPathComponent("postgres", isDirectory: true)
        self.logger = logger
    }

    var isRoot: Bool { geteuid() == 0 }
    var passwordFile: URL { dataDirectory.appendingPathComponent("postgres.password") }
    var clusterPointerFile: URL { dataDirectory.appendingPathComponent("postgres.location") }
    /// The port the cluster ran on last: a restart takes it again when it is free, so the cluster keeps its URL.
    var portFile: URL { dataDirectory.appendingPathComponent("postgres.port") }

    /// Creates the cluster if needed, starts it if it is not running (on `preferredPort`, or a free one), and returns
    /// the URL of the `marquee` database.
    @discardableResult
    public func start(preferredPort: Int? = nil) async throws -> String {
        if let databaseURL { return databaseURL }
        binDirectory = try Self.findBinaries()
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        if let pointer = try? String(contentsOf: clusterPointerFile, encoding: .utf8) {
            clusterDirectory = URL(fileURLWithPath: pointer.trimmingCharacters(in: .whitespacesAndNewlines), isDirectory: true)
        }
        if isRoot { try await ensureSystemUser() }
        if !FileManager.default.fileExists(atPath: clusterDirectory.appendingPathComponent("PG_VERSION").path) {
            try await initializeCluster()
        }
        guard let password = try? String(contentsOf: passwordFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            !password.isEmpty
        else {
            throw EmbeddedPostgresError(
                code: .corrupt,
                message:
                    "the embedded cluster at \(clusterDirectory.path) has no password file \(passwordFile.path); remove \(dataDirectory.path) to start afresh"
            )
        }
        let port: Int
        if let running = try await runningPort() {
            port = running
            logger.info("using the embedded PostgreSQL that is already running", metadata: ["port": "\(port)"])
        } else {
            if let preferredPort {
                port = preferredPort
            } else if let last = lastPort(), await Self.isFree(last) {
                port = last
            } else {
                port = try await Self.freePort()
            }
            try await startServer(port: port)
            try? String(port).write(to: portFile, atomically: true, encoding: .utf8)
            startedHere = true
        }
        let url = "postgres://\(Self.userName):\(password)@127.0.0.1:\(port)/\(Self.databaseName)"
        try await createDatabaseIfMissing(port: port, password: password)
        databaseURL = url
        return url
    }

    /// Stops the cluster if this process started it.
    public func stop() async throws {
        guard startedHere else { return }
        startedHere = false
        databaseURL = nil
        let result = try await pg("pg_ctl", ["stop", "-D", clusterDirectory.path, "-m", "fast", "-w", "-t", "60"])
        guard result.succeeded else {
            throw EmbeddedPostgresError(code: .stopFailed, message: "pg_ctl stop failed: \(result.output)")
        }
        logger.info("embedded PostgreSQL stopped")
    }

    /// Stops the cluster whoever started it (`marquee db stop`).
    public func stopRunning() async throws {
        binDirectory = try Self.findBinaries()
        if let pointer = try? String(contentsOf: clusterPointerFile, encoding: .utf8) {
            clusterDirectory = URL(fileURLWithPath: pointer.trimmingCharacters(in: .whitespacesAndNewlines), isDirectory: true)
        }
        guard try await runningPort() != nil else { return }
        startedHere = true
        try await stop()
    }

    /// The process id of the running postmaster, if any.
    public func postmasterPID() -> Int32? {
        guard let text = try? String(contentsOf: clusterDirectory.appendingPathComponent("postmaster.pid"), encoding: .utf8),
            let first = text.split(separator: "\n").first, let pid = Int32(first), kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    // MARK: - Steps

    static func findBinaries() throws -> String {
        if let bin = ProcessInfo.processInfo.environment["MARQUEE_PG_BIN"], FileManager.default.isExecutableFile(atPath: bin + "/pg_ctl") {
            return bin
        }
        if let initdb = ProcessRunner.which("initdb"), let pgctl = ProcessRunner.which("pg_ctl") {
            let resolved = URL(fileURLWithPath: pgctl).resolvingSymlinksInPath().deletingLastPathComponent().path
            if FileManager.default.isExecutableFile(atPath: resolved + "/initdb") { return resolved }
            return URL(fileURLWithPath: initdb).deletingLastPathComponent().path
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        for version in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/pg_ctl") {
            return "\(root)/\(version)/bin"
        }
        throw EmbeddedPostgresError(
            code: .binariesMissing,
            message: """
                PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or in /usr/lib/postgresql/*/bin.
                Install them with `sudo apt-get install -y postgresql` (Debian/Ubuntu) or `brew install postgresql@16` (macOS),
                set MARQUEE_PG_BIN to the folder that holds them, or pass --database-url to use a server you run yourself.
                """
        )
    }

    private func ensureSystemUser() async throws {
        let exists = try await ProcessRunner.run("/usr/bin/id", ["-u", Self.systemUser])
        if exists.succeeded { return }
        let useradd = ProcessRunner.which("useradd") ?? "/usr/sbin/useradd"
        let result = try await ProcessRunner.run(
            useradd, ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", Self.systemUser])
        guard result.succeeded else {
            throw EmbeddedPostgresError(
                code: .unprivilegedUser,
                message: "PostgreSQL does not run as root, and creating the system user '\(Self.systemUser)' failed: \(result.output)")
        }
        logger.info("created system user '\(Self.systemUser)' to run the embedded PostgreSQL")
    }

    /// Runs a PostgreSQL program, as the unprivileged user when this process is root.
    private func pg(_ program: String, _ arguments: [String]) async throws -> ProcessResult {
        let executable = "\(binDirectory)/\(program)"
        var environment = ProcessInfo.processInfo.environment
        environment["LC_ALL"] = "C.UTF-8"
        environment.removeValue(forKey: "PGDATA")
        if isRoot {
            let runuser = ProcessRunner.which("runuser") ?? "/usr/sbin/runuser"
            return try await ProcessRunner.run(runuser, ["-u", Self.systemUser, "--", executable] + arguments, environment: environment)
        }
        return try await ProcessRunner.run(executable, arguments, environment: environment)
    }

    private func chownToSystemUser(_ path: String, recursive: Bool = false) async throws {
        guard isRoot else { return }
        let args = (recursive ? ["-R"] : []) + ["\(Self.systemUser):\(Self.systemUser)", path]
        let result = try await ProcessRunner.run(ProcessRunner.which("chown") ?? "/bin/chown", args)
        guard result.succeeded else {
            throw EmbeddedPostgresError(code: .unprivilegedUser, message: "chown of \(path) failed: \(result.output)")
        }
    }

    /// As root, the cluster directory must be reachable by the unprivileged user; when a parent folder (such as
    /// /root) is closed to it, the cluster goes to /var/lib/marquee instead and the data directory records where.
    private func chooseReachableClusterDirectory() async throws {
        guard isRoot else { return }
        let probe = try await ProcessRunner.run(
            ProcessRunner.which("runuser") ?? "/usr/sbin/runuser", ["-u", Self.systemUser, "--", "/usr/bin/test", "-x", dataDirectory.path])
        if probe.succeeded { return }
        let hash = dataDirectory.path.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
        let fallback = URL(fileURLWithPath: "/var/lib/marquee/\(String(hash, radix: 16))/postgres", isDirectory: true)
        logger.warning(
            "the data directory is not reachable by the system user '\(Self.systemUser)'; keeping the cluster in \(fallback.path)")
        try FileManager.default.createDirectory(at: fallback.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "/var/lib/marquee")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fallback.deletingLastPathComponent().path)
        clusterDirectory = fallback
        try fallback.path.write(to: clusterPointerFile, atomically: true, encoding: .utf8)
    }

    private func initializeCluster() async throws {
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dataDirectory.path)
        try await chooseReachableClusterDirectory()
        try? FileManager.default.removeItem(at: clusterDirectory)
        try FileManager.default.createDirectory(at: clusterDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try await chownToSystemUser(clusterDirectory.path)

        let password = Self.randomPassword()
        let pwfile = clusterDirectory.deletingLastPathComponent().appendingPathComponent(".pwfile-\(UUID().uuidString)")
        try password.write(to: pwfile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: pwfile) }
        try await chownToSystemUser(pwfile.path)

        logger.info("creating the embedded PostgreSQL cluster", metadata: ["path": "\(clusterDirectory.path)"])
        let result = try await pg(
            "initdb",
            [
                "-D", clusterDirectory.path, "-U", Self.userName, "--pwfile", pwfile.path, "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            ])
        guard result.succeeded else {
            try? FileManager.default.removeItem(at: clusterDirectory)
            throw EmbeddedPostgresError(code: .initFailed, message: "initdb failed: \(result.output)")
        }
        let settings = """

            # Marquee's embedded cluster
            listen_addresses = '127.0.0.1'
            unix_socket_directories = ''
            wal_level = logical
            # each server (node) streams its slot over a replication connection of its own (pg_hba.conf from initdb
            # already lets the cluster's users make replication connections from 127.0.0.1)
            max_replication_slots = 50
            max_wal_senders = 50
            max_connections = 200
            logging_collector = off

            """
        let conf = clusterDirectory.appendingPathComponent("postgresql.conf")
        let handle = try FileHandle(forWritingTo: conf)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(settings.utf8))
        try handle.close()
        try password.write(to: passwordFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passwordFile.path)
    }

    private func runningPort() async throws -> Int? {
        let status = try await pg("pg_ctl", ["status", "-D", clusterDirectory.path])
        guard status.succeeded,
            let text = try? String(contentsOf: clusterDirectory.appendingPathComponent("postmaster.pid"), encoding: .utf8)
        else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count > 3, let port = Int(lines[3].trimmingCharacters(in: .whitespaces)) else { return nil }
        return port
    }

    private func startServer(port: Int) async throws {
        let logFile = clusterDirectory.appendingPathComponent("server.log").path
        logger.info("starting the embedded PostgreSQL", metadata: ["port": "\(port)"])
        let result = try await pg("pg_ctl", ["start", "-D", clusterDirectory.path, "-w", "-t", "60", "-l", logFile, "-o", "-p \(port)"])
        guard result.succeeded else {
            let tail = (try? String(contentsOfFile: logFile, encoding: .utf8))?.split(separator: "\n").suffix(10).joined(separator: "\n") ?? ""
            throw EmbeddedPostgresError(code: .startFailed, message: "pg_ctl start failed: \(result.output)\n\(tail)")
        }
    }

    private func createDatabaseIfMissing(port: Int, password: String) async throws {
        let admin = try DatabaseURL(parsing: "postgres://\(Self.userName):\(password)@127.0.0.1:\(port)/postgres")
        try await admin.withConnection(logger: logger) { connection in
            let rows = try await connection.query("select 1 from pg_database where datname = \(Self.databaseName)", logger: self.logger)
            var exists = false
            for try await _ in rows { exists = true }
            if !exists {
                try await connection.query("create database \(unescaped: Self.databaseName)", logger: self.logger)
            }
        }
    }

    private func lastPort() -> Int? {
        (try? String(contentsOf: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    static func isFree(_ port: Int) async -> Bool {
        guard (1...65535).contains(port),
            let channel = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1).bind(host: "127.0.0.1", port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }

    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port
        try await channel.close()
        guard let port else {
            throw EmbeddedPostgresError(code: .startFailed, message: "could not find a free local port")
        }
        return port
    }

    static func randomPassword() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(UInt8.random(in: 0...15, using: &generator), radix: 16) }.joined()
    }
}

/// Keeps the embedded cluster running for the life of the service group and stops it on shutdown.
public struct EmbeddedPostgresService: Service {
    let postgres: EmbeddedPostgres

    public init(_ postgres: EmbeddedPostgres) { self.postgres = postgres }

    public func run() async throws {
        try? await gracefulShutdown()
        try await postgres.stop()
    }
}
