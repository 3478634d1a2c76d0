import Foundation
import Logging
import PostgresNIO

/// Applies `db/migrations/NNNN_name.sql` in order, each in its own transaction, and records them in
/// `schema_migrations`. An advisory lock keeps two servers starting at once from applying the same file twice.
public struct Migrator: Sendable {
    public struct Migration: Sendable {
        public var version: String
        public var name: String
        public var sql: String
    }

    public let migrations: [Migration]

    public init(directory: URL) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
        var seen = Set<String>()
        migrations = try files.map { file in
            let base = String(file.dropLast(4))
            guard let underscore = base.firstIndex(of: "_"), base[..<underscore].allSatisfy(\.isNumber) else {
                throw MigrationError(message: "migration file \(file) must be named NNNN_name.sql")
            }
            let version = String(base[..<underscore])
            guard seen.insert(version).inserted else { throw MigrationError(message: "two migrations share version \(version)") }
            let sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            return Migration(version: version, name: String(base[base.index(after: underscore)...]), sql: sql)
        }
    }

    /// Applies what is not applied yet; returns the versions it applied.
    @discardableResult
    public func migrate(_ url: DatabaseURL, logger: Logger) async throws -> [String] {
        try await url.withConnection(logger: logger) { connection in
            _ = try await connection.simpleQuery("select pg_advisory_lock(7263512)").get()
            _ = try await connection.simpleQuery(
                """
                create table if not exists schema_migrations (
                    version text primary key,
                    name text not null,
                    applied_at timestamptz not null default now()
                )
                """
            ).get()
            var applied: [String] = []
            do {
                var done = Set<String>()
                for try await version in try await connection.query("select version from schema_migrations", logger: logger).decode(String.self) {
                    done.insert(version)
                }
                for migration in migrations where !done.contains(migration.version) {
                    logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                    do {
                        _ = try await connection.simpleQuery("begin").get()
                        for statement in SQLSplitter.statements(migration.sql) {
                            _ = try await connection.simpleQuery(statement).get()
                        }
                        try await connection.query(
                            "insert into schema_migrations (version, name) values (\(migration.version), \(migration.name))", logger: logger)
                        _ = try await connection.simpleQuery("commit").get()
                    } catch {
                        _ = try? await connection.simpleQuery("rollback").get()
                        throw MigrationError(message: "migration \(migration.version)_\(migration.name) failed: \(describeError(error))")
                    }
                    applied.append(migration.version)
                }
            } catch {
                _ = try? await connection.simpleQuery("select pg_advisory_unlock(7263512)").get()
                throw error
            }
            _ = try await connection.simpleQuery("select pg_advisory_unlock(7263512)").get()
            return applied
        }
    }

    /// Finds `db/migrations`: `MARQUEE_MIGRATIONS_DIR`, then upwards from the working directory and from the executable.
    public static func locateDirectory() throws -> URL {
        try ResourceLocator.locate("db/migrations", override: "MARQUEE_MIGRATIONS_DIR")
    }
}

public struct MigrationError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// Finds the project's resource folders (migrations, web pages) next to the sources the binary was built from.
public enum ResourceLocator {
    public static func locate(_ relative: String, override: String) throws -> URL {
        let fm = FileManager.default
        if let dir = ProcessInfo.processInfo.environment[override], fm.fileExists(atPath: dir) {
            return URL(fileURLWithPath: dir, isDirectory: true)
        }
        var starts = [URL(fileURLWithPath: fm.currentDirectoryPath, isDirectory: true)]
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
        starts.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent())
        for start in starts {
            var dir = start.standardizedFileURL
            while true {
                let candidate = dir.appendingPathComponent(relative, isDirectory: true)
                if fm.fileExists(atPath: candidate.path) { return candidate }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        throw MigrationError(message: "could not find \(relative); run from the project folder or set \(override)")
    }
}

/// Splits a SQL script into statements at top-level semicolons, leaving those inside quotes, dollar-quoted bodies
/// and comments alone.
public enum SQLSplitter {
    public static func statements(_ sql: String) -> [String] {
        let chars = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var hasCode = false  // anything besides comments and blanks in the current statement
        var i = 0
        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty && hasCode { statements.append(text) }
            current = String.UnicodeScalarView()
            hasCode = false
        }
        while i < chars.count {
            let c = chars[i]
            let next: Unicode.Scalar? = i + 1 < chars.count ? chars[i + 1] : nil
            if c == "-" && next == "-" {
                while i < chars.count && chars[i] != "\n" { current.append(chars[i]); i += 1 }
                continue
            }
            if c == "/" && next == "*" {
                current.append(c); current.append("*"); i += 2
                while i < chars.count && !(chars[i] == "*" && i + 1 < chars.count && chars[i + 1] == "/") { current.append(chars[i]); i += 1 }
                if i < chars.count { current.append("*"); current.append("/"); i += 2 }
                continue
            }
            if c != " " && c != "\n" && c != "\t" && c != "\r" && c != ";" { hasCode = true }
            if c == "'" || c == "\"" {
                // E'...' strings take backslash escapes
                let escapes = c == "'" && i > 0 && (chars[i - 1] == "E" || chars[i - 1] == "e")
                current.append(c); i += 1
                while i < chars.count {
                    if escapes && chars[i] == "\\" && i + 1 < chars.count {
                        current.append(chars[i]); current.append(chars[i + 1]); i += 2
                        continue
                    }
                    current.append(chars[i])
                    if chars[i] == c {
                        if i + 1 < chars.count && chars[i + 1] == c { current.append(c); i += 2; continue }
                        i += 1
                        break
                    }
                    i += 1
                }
                continue
            }
            if c == "$" {
                // a dollar-quote tag: $$ or $name$
                var j = i + 1
                while j < chars.count && (chars[j] == "_" || chars[j].properties.isAlphabetic || ("0"..."9").contains(chars[j])) { j += 1 }
                if j < chars.count && chars[j] == "$" {
                    let tag = Array(chars[i...j])
                    for t in tag { current.append(t) }
                    i = j + 1
                    while i < chars.count {
                        if chars[i] == "$" && i + tag.count <= chars.count && Array(chars[i..<(i + tag.count)]) == tag {
                            for t in tag { current.append(t) }
                            i += tag.count
                            break
                        }
                        current.append(chars[i]); i += 1
                    }
                    continue
                }
            }
            if c == ";" {
                flush()
                i += 1
                continue
            }
            current.append(c)
            i += 1
        }
        flush()
        return statements
    }

}
