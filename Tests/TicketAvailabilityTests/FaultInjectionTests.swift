import Foundation
import Logging
import MarqueeCore
import Testing

@testable import MarqueeServer
@testable import TicketAvailability

/// SDK clients behind a faulty network (a TCP proxy in front of a live server, written in these tests) converge to
/// the database's counts once the fault ends, while reservations keep being committed in the database.
@Suite(.testDatabase, .serialized) struct FaultInjectionTests {
    static let followerCount = 4

    func database() throws -> DatabaseURL {
        guard let database = TestDatabase.current else { throw TestFailure("this suite needs the .testDatabase trait") }
        return database.url
    }

    /// Every connection is cut (twice) in the middle of a burst of reservations.
    @Test func clientsConvergeAfterTheirConnectionsAreCutMidBurst() async throws {
        try await FaultScene.run(database: try database()) { scene, keep in
            let (followers, burst) = try await scene.startFollowersAndBurst(Self.followerCount, keep: keep)
            try await burst.waitForMore(10, "before the cut")
            #expect(scene.proxy.openConnections >= Self.followerCount)
            scene.proxy.cutAll()
            try await burst.waitForMore(5, "after the first cut")
            scene.proxy.cutAll()
            try await burst.waitForMore(10, "after the second cut")
            #expect(await burst.stop() == 0)
            try await scene.waitForConvergence(followers, "after the cuts")
            try await scene.waitForStatus(followers, "connected") { $0 == .connected }
            for follower in followers {
                #expect(follower.statuses.contains { if case .reconnecting = $0 { true } else { false } })
            }
            #expect(scene.proxy.acceptedConnections > Self.followerCount)
        }
    }

    /// The network stalls (sockets open, no bytes move): heartbeats time out, the clients give the dead sockets up,
    /// fall back to polling, and come back to realtime when traffic flows again.
    @Test func clientsDetectAStalledNetworkAndConvergeWhenItFlowsAgain() async throws {
        try await FaultScene.run(database: try database()) { scene, keep in
            let (followers, burst) = try await scene.startFollowersAndBurst(Self.followerCount, keep: keep)
            try await burst.waitForMore(10, "before the stall")
            scene.proxy.stall()
            try await scene.signal.waitUntil("waiting for every client to notice the dead socket") {
                followers.allSatisfy { $0.problems.contains(.heartbeatTimeout) }
            }
            try await burst.waitForMore(10, "during the stall")
            // the REST endpoint is still reachable: polling keeps the pictures current during the stall
            try await scene.waitForStatus(followers, "polling") { $0 == .polling }
            try await scene.waitForCatchUp(followers, "while polling")
            scene.proxy.resume()
            try await scene.reconnectAndConverge(followers, burst, "after the stall")
        }
    }

    /// The proxy refuses every new connection (accepts, then closes before the upgrade) after cutting the open ones.
    @Test func clientsPollWhileSocketsAreRefusedAndReturnToRealtime() async throws {
        try await FaultScene.run(database: try database()) { scene, keep in
            let (followers, burst) = try await scene.startFollowersAndBurst(Self.followerCount, keep: keep)
            try await burst.waitForMore(5, "before refusing")
            scene.proxy.setRefusing(true)
            scene.proxy.cutAll()
            try await scene.waitForStatus(followers, "polling") { $0 == .polling }
            try await burst.waitForMore(10, "while refusing")
            try await scene.waitForCatchUp(followers, "while polling")
            #expect(scene.proxy.refusedConnections >= Self.followerCount)
            scene.proxy.setRefusing(false)
            try await scene.reconnectAndConverge(followers, burst, "after refusing")
        }
    }

    /// The server is stopped and started again (same node, same database) while reservations go on.
    @Test func clientsConvergeAfterTheServerRestarts() async throws {
        try await FaultScene.run(database: try database()) { scene, keep in
            let (followers, burst) = try await scene.startFollowersAndBurst(Self.followerCount, keep: keep)
            try await burst.waitForMore(10, "before the restart")
            try await scene.stopServer()
            try await scene.signal.waitUntil("waiting for every client to lose its socket") {
                followers.allSatisfy { $0.status != .connected }
            }
            try await burst.waitForMore(10, "while the server is down")
            try await scene.startServer()
            try await scene.reconnectAndConverge(followers, burst, "after the restart")
        }
    }

    /// PostgreSQL itself is restarted under the running server (a private embedded cluster, so that the shared test
    /// cluster is left alone) while reservations go on.
    @Test func clientsConvergeAfterPostgreSQLRestarts() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("marquee-pg-restart-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let postgres = EmbeddedPostgres(dataDirectory: directory + "/db", logger: Logger(label: "pg-restart-test"))
        let url = try DatabaseURL(parsing: try await postgres.start())
        do {
            try await FaultScene.run(database: url) { scene, keep in
                let (followers, burst) = try await scene.startFollowersAndBurst(Self.followerCount, keep: keep)
                try await burst.waitForMore(10, "before the restart")
                burst.allow(10)  // attempted while the database goes away and comes back
                try await postgres.stop()
                _ = try await postgres.start(preferredPort: url.port)
                try await burst.waitForMore(20, "after the restart")
                await burst.stop()
                try await scene.waitForConvergence(followers, "after PostgreSQL restarted")
                try await scene.waitForStatus(followers, "connected") { $0 == .connected }
            }
        } catch {
            try? await postgres.stop()
            throw error
        }
        try await postgres.stop()
    }
}
