import Foundation
import Testing

@testable import MarqueeServer

private func migrationsDirectory() throws -> URL { try Migrator.locateDirectory() }

private func migrationText(_ file: String) throws -> String {
    try String(contentsOf: migrationsDirectory().appendingPathComponent(file), encoding: .utf8)
}

/// A statement without the comment lines that lead it, on one line, for comparing beginnings.
private func head(_ statement: String) -> String {
    statement.split(separator: "\n").drop { $0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }.joined(separator: " ")
}

private func occurrences(of needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

@Suite struct SQLSplitterMigrationFileTests {
    @Test func schemaFile() throws {
        let statements = SQLSplitter.statements(try migrationText("0001_schema.sql"))
        #expect(
            statements.map { head($0).split(separator: " ").prefix(3).joined(separator: " ") } == [
                "create table events", "create table event_tickets", "create index event_tickets_event_id_idx", "create table tickets",
                "create index tickets_event_ticket_id_idx", "create index tickets_user_id_idx", "create index tickets_open_holds_idx",
            ])
        // the comment inside the tickets table (with its comma) stays inside the statement
        #expect(statements[1].contains("-- lets tickets reference (ticket type, event) together"))
        #expect(statements[1].hasSuffix(")"))
        #expect(statements.last == "create index tickets_open_holds_idx on tickets (hold_expires_at) where status = 'reserved'")
    }

    @Test func dollarQuotedBodiesStayWhole() throws {
        let statements = SQLSplitter.statements(try migrationText("0002_count_triggers.sql"))
        let beginnings = statements.map { head($0).split(separator: " ").prefix(3).joined(separator: " ") }
        #expect(
            beginnings == [
                "create function event_tickets_derive()", "create trigger event_tickets_derive", "create function ticket_seats(status",
                "create function event_tickets_move(ticket_type", "create function tickets_validate()", "create trigger tickets_validate",
                "create function tickets_count()", "create trigger tickets_count", "create function expire_holds(ticket_type",
                "create view event_ticket_availability",
            ])
        for statement in statements where statement.contains("create function") {
            #expect(occurrences(of: "$$", in: statement) == 2, "\(head(statement).prefix(60))")
            #expect(statement.hasSuffix("$$"), "\(head(statement).prefix(60))")
        }
        let move = try #require(statements.first { $0.contains("create function event_tickets_move") })
        // the body's own semicolons were not split on
        #expect(move.contains("raise exception 'sold_out' using errcode = 'MQ001',"))
        #expect(occurrences(of: ";", in: move) >= 10)
        #expect(statements.last?.hasSuffix(") stale on true") == true)
    }

    @Test func publicationFile() throws {
        #expect(
            SQLSplitter.statements(try migrationText("0003_publication.sql")).map(head).prefix(4) == [
                "alter table event_tickets replica identity full", "alter table tickets replica identity full",
                "alter table events replica identity full", "create publication marquee for table events, event_tickets, tickets",
            ])
    }

    @Test func everyMigrationSplitsIntoWholeStatements() throws {
        let migrator = try Migrator(directory: try migrationsDirectory())
        #expect(migrator.migrations.prefix(3).map(\.version) == ["0001", "0002", "0003"])
        for migration in migrator.migrations {
            let statements = SQLSplitter.statements(migration.sql)
            #expect(!statements.isEmpty, "\(migration.version)")
            for statement in statements {
                #expect(occurrences(of: "$$", in: statement) % 2 == 0, "\(migration.version): \(head(statement).prefix(60))")
                #expect(!statement.hasPrefix(";") && !statement.hasSuffix(";"))
                #expect(!head(statement).isEmpty, "\(migration.version): a statement of comments only")
            }
            #expect(statements.map { occurrences(of: "$$", in: $0) }.reduce(0, +) == occurrences(of: "$$", in: migration.sql))
        }
    }
}

@Suite struct SQLSplitterTests {
    @Test func splitsAtTopLevelSemicolons() {
        #expect(SQLSplitter.statements("select 1; select 2 ;\n\n select 3") == ["select 1", "select 2", "select 3"])
        #expect(SQLSplitter.statements(";;  ; \n") == [])
        #expect(SQLSplitter.statements("") == [])
    }

    @Test func quotesKeepTheirSemicolons() {
        #expect(SQLSplitter.statements("select 'a;b'; select 2") == ["select 'a;b'", "select 2"])
        #expect(SQLSplitter.statements("select 'it''s; fine'; select 2") == ["select 'it''s; fine'", "select 2"])
        #expect(SQLSplitter.statements(#"select "odd;name" from t; select 2"#) == [#"select "odd;name" from t"#, "select 2"])
        #expect(SQLSplitter.statements(#"select "a""b;c"; select 2"#) == [#"select "a""b;c""#, "select 2"])
    }

    @Test func escapeStringsKeepTheirSemicolons() {
        // E'…' strings escape a quote with a backslash
        #expect(SQLSplitter.statements(#"select E'it\'s; here'; select 2"#) == [#"select E'it\'s; here'"#, "select 2"])
    }

    @Test func commentsKeepTheirSemicolons() {
        #expect(SQLSplitter.statements("select 1 -- one; two\n; select 2") == ["select 1 -- one; two", "select 2"])
        #expect(SQLSplitter.statements("select /* a; b */ 1; select 2") == ["select /* a; b */ 1", "select 2"])
        #expect(SQLSplitter.statements("-- only a comment; really\n") == [])
        #expect(SQLSplitter.statements("select 1;\n-- trailing comment\n") == ["select 1"])
        #expect(SQLSplitter.statements("select 1; /* trailing block comment */") == ["select 1"])
    }

    @Test func dollarQuotes() {
        let body = "create function f() returns int language plpgsql as $$ begin perform 1; return 2; end; $$"
        #expect(SQLSplitter.statements(body + "; select 3") == [body, "select 3"])
        let tagged = "do $fn$ begin raise notice '$$;'; end $fn$"
        #expect(SQLSplitter.statements(tagged + ";select 4;") == [tagged, "select 4"])
        // a positional parameter is not a dollar quote
        #expect(SQLSplitter.statements("prepare p as select $1; execute p(1)") == ["prepare p as select $1", "execute p(1)"])
        // an unterminated body runs to the end rather than being split
        #expect(SQLSplitter.statements("do $$ begin; end;") == ["do $$ begin; end;"])
    }
}

@Suite(.testDatabase) struct MigratorDatabaseTests {
    @Test func secondRunAppliesNothing() async throws {
        let database = try TestDatabase.require()
        let migrator = try Migrator(directory: try migrationsDirectory())
        let logger = TestDatabase.logger
        let first = try await migrator.migrate(database.url, logger: logger)
        #expect(first == migrator.migrations.map(\.version))
        #expect(first.prefix(3) == ["0001", "0002", "0003"])
        let second = try await migrator.migrate(database.url, logger: logger)
        #expect(second == [])
        #expect(try await database.column("select version from schema_migrations order by version").compactMap { $0 } == first)
        // what the migrations made is there
        #expect(
            try await database.column(
                "select tablename::text from pg_publication_tables where pubname = 'marquee' and schemaname = 'public' order by 1")
                == ["event_tickets", "events", "tickets"])
        #expect(try await database.column("select relreplident::text from pg_class where relname = 'event_tickets'") == ["f"])
        #expect(try await database.column("select count(*)::text from pg_proc where proname = 'event_tickets_move'") == ["1"])
    }
}
