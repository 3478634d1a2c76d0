import MarqueeCore
import PostgresNIO

extension ChangeFeed {
    /// What `pg_type` says about the database's user-defined types (domains, composites, arrays of them), so that their
    /// values reach clients the way `to_jsonb` renders them.
    func typeCatalog(_ connection: WatchedConnection) async throws -> PgTypeCatalog {
        let logger = self.logger
        return try await configuration.deadline.run("reading the database's types", on: connection.watch) {
            var catalog = PgTypeCatalog()
            let rows = try await connection.connection.query(PostgresQuery(unsafeSQL: PgTypeCatalog.query), logger: logger)
            for try await (oid, kind, related, text, fieldName, fieldType) in rows.decode((Int64, String, Int64, String, String, Int64).self) {
                catalog.add(row: oid, kind: kind, related: related, text: text, fieldName: fieldName, fieldType: fieldType)
            }
            return catalog
        }
    }

    /// After a batch: when its changes used a type the catalog did not describe (created since it was read), reads the
    /// catalog again into a fresh assembler and returns true: the caller then reads the same changes again (the slot
    /// has not moved) instead of sending values of that type as plain text. False when nothing was missing, or when the
    /// type is not in `pg_type` any more (dropped since), so no batch is read twice for it.
    func learnMissingTypes(_ assembler: inout ChangeAssembler, _ connection: WatchedConnection) async throws -> Bool {
        let missing = assembler.typesMissingFromCatalog
        guard !missing.isEmpty else { return false }
        var catalog = try await typeCatalog(connection)
        let learnt = missing.contains { catalog.knows($0) }
        // not in pg_type (dropped since): its values are text, and it is not looked up again for every batch
        for oid in missing where !catalog.knows(oid) { catalog.add(oid, .text) }
        assembler = ChangeAssembler()
        assembler.catalog = catalog
        return learnt
    }
}
