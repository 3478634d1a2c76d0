import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MarqueeCore
import NIOCore
import Testing

@testable import MarqueeServer

/// One scrape of `/metrics`, parsed.
struct Scrape {
    let samples: [PrometheusText.Sample]
    let text: String

    init(_ app: LiveApp) async throws {
        let response = try await app.client.execute(uri: "/metrics", method: .get)
        guard response.status == .ok else { throw TestFailure("/metrics answered \(response.status.code)") }
        #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
        text = String(buffer: response.body)
        samples = PrometheusText.samples(text)
    }

    /// The value of a series, 0 when it is absent (a counter that never moved, a gauge that was removed).
    func callAsFunction(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.first { $0.name == name && $0.labels == labels }?.value ?? 0
    }

    func has(_ name: String, _ labels: [String: String]) -> Bool { samples.contains { $0.name == name && $0.labels == labels } }
}

/// The metrics move by exactly what a watcher's life does: connect, join, a change, leave, close.
@Suite(.testDatabase) struct MetricsLiveTests {
    @Test func connectJoinChangeLeaveMoveTheMetricsByExactAmounts() async throws {
        try await withLiveApp { app in
            let service = try await app.token(.serviceRole, sub: nil)
            let created = try await app.client.execute(
                uri: "/api/events", method: .post, headers: [.authorization: "Bearer \(service)", .contentType: "application/json"],
                body: ByteBuffer(
                    string:
                        #"{"name":"Metrics Night","starts_at":"2030-05-01T20:00:00Z","venue":"Hall","ticket_types":[{"name":"GA","price_cents":2500,"capacity":50}]}"#
                ))
            #expect(created.status == .created)
            let event = try JSONValue.parse(String(buffer: created.body))
            let eventID = try #require(event["id"]?.stringValue)
            let typeID = try #require(event["ticket_types"]?.arrayValue?.first?["id"]?.stringValue)
            let table = ["table": "public.event_tickets"]
            let before = try await Scrape(app)
            #expect(before("marquee_database_up") == 1)
            #expect(before("marquee_change_feed_connected") == 1)
            let buyer = try await app.token(sub: "metrics-buyer")

            try await withSocket(app, apikey: buyer) { socket in
                let connected = try await Scrape(app)
                #expect(connected("marquee_realtime_connections") - before("marquee_realtime_connections") == 1)

                let bindings: [JSONObject] = [
                    ["event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": .string("event_id=eq.\(eventID)")]
                ]
                _ = try await socket.subscribe("realtime:event-\(eventID)-tickets", ref: "1", bindings: bindings)
                let joined = try await Scrape(app)
                #expect(joined("marquee_realtime_channels") - before("marquee_realtime_channels") == 1)
                #expect(joined("marquee_realtime_subscriptions", table) - before("marquee_realtime_subscriptions", table) == 1)
                #expect(joined("marquee_realtime_frames_in_total") - before("marquee_realtime_frames_in_total") == 1)
                #expect(joined("marquee_event_channels", ["event_id": eventID]) == 1)
                #expect(joined("marquee_event_subscriptions_total") - before("marquee_event_subscriptions_total") == 1)

                // a reservation changes the ticket type's row once: one change, one socket, one frame
                let reserved = try await app.client.execute(
                    uri: "/api/events/\(eventID)/reservations", method: .post,
                    headers: [
                        .authorization: "Bearer \(buyer)", .contentType: "application/json", HTTPField.Name("Idempotency-Key")!: "k-\(randomSuffix())",
                    ],
                    body: ByteBuffer(string: #"{"ticket_type_id":"\#(typeID)","quantity":2}"#))
                #expect(reserved.status == .created)
                let frame = try await socket.receiveText("the change of the reservation")
                #expect(try socket.serializer.decode(frame).event == "postgres_changes")
                // the writer writes in order: once the heartbeat's reply has arrived, the change's write was observed
                try await socket.sendText(#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"hb"}"#)
                _ = try await socket.receiveText("the heartbeat reply")
                let changed = try await Scrape(app)
                func delta(_ name: String, _ labels: [String: String] = [:]) -> Double { changed(name, labels) - joined(name, labels) }
                #expect(delta("marquee_realtime_deliveries_total") == 1)
                #expect(delta("marquee_realtime_encodes_total") == 1)
                #expect(delta("marquee_realtime_bytes_out_total") == Double(frame.utf8.count))
                #expect(delta("marquee_fanout_sockets_count") == 1)
                #expect(delta("marquee_fanout_sockets_bucket", ["le": "1.0"]) == 1)
                #expect(delta("marquee_commit_to_queue_seconds_count") == 1)
                #expect(delta("marquee_commit_to_send_seconds_count") == 1)
                #expect(delta("marquee_commit_to_send_seconds_bucket", ["le": "+Inf"]) == 1)
                #expect(delta("marquee_commit_to_send_seconds_sum") > 0)
                #expect(delta("marquee_realtime_frames_in_total") == 1)  // the heartbeat
                #expect(delta("marquee_reservations_total", ["outcome": "created"]) == 1)
                #expect(
                    delta("marquee_http_requests_total", ["method": "POST", "route": "/api/events/{id}/reservations", "status": "201"]) == 1)
                #expect(
                    delta("marquee_http_request_seconds_count", ["method": "POST", "route": "/api/events/{id}/reservations", "status": "201"])
                        == 1)
                #expect(delta("marquee_realtime_connections") == 0)

                try await socket.send(PhoenixMessage(joinRef: "1", ref: "2", topic: "realtime:event-\(eventID)-tickets", event: "phx_leave"))
                _ = try await socket.receiveText("the leave reply")
                _ = try await socket.receiveText("phx_close")
                let left = try await Scrape(app)
                #expect(left("marquee_realtime_channels") == before("marquee_realtime_channels"))
                #expect(left("marquee_realtime_subscriptions", table) == before("marquee_realtime_subscriptions", table))
                #expect(!left.has("marquee_event_channels", ["event_id": eventID]))
                #expect(left("marquee_realtime_connections") - before("marquee_realtime_connections") == 1)
            }
            try await app.log.waitFor("realtime disconnected")
            let closed = try await Scrape(app)
            #expect(closed("marquee_realtime_connections") == before("marquee_realtime_connections"))
            #expect(closed("marquee_realtime_slow_consumer_drops_total") == before("marquee_realtime_slow_consumer_drops_total"))
        }
    }

    @Test func everyCatalogMetricIsExportedWithHelpAndType() async throws {
        try await withLiveApp { app in
            let scrape = try await Scrape(app)
            // series that exist from the start (labelled families appear with their first label set)
            let lazy: Set<String> = [
                "marquee_realtime_subscriptions", "marquee_errors_total", "marquee_event_channels", "marquee_http_requests_total",
                "marquee_http_request_seconds", "marquee_change_feed_wal_behind_bytes", "marquee_change_feed_last_commit_age_seconds",
            ]
            for (name, help) in MetricCatalog.entries where !lazy.contains(name) {
                #expect(scrape.text.contains("# HELP \(name) \(help)\n"), "\(name)")
                #expect(scrape.text.contains("# TYPE \(name) "), "\(name)")
            }
        }
    }

    @Test func registriesOfTwoServersInOneProcessAreSeparate() {
        let first = HubMetrics()
        let second = HubMetrics()
        first.limitHit(LimitName.joins.rawValue)
        #expect(first.registry.value("marquee_limit_hits_total", ["limit": "ClientJoinRateLimitReached"]) == 1)
        #expect(second.registry.value("marquee_limit_hits_total", ["limit": "ClientJoinRateLimitReached"]) == 0)
    }

    @Test func prometheusTextReaderReadsEscapedLabels() {
        let samples = PrometheusText.samples(
            "# HELP x y\n# TYPE x counter\nx{reason=\"a \\\"b\\\" \\\\ c\",le=\"+Inf\"} 3\nplain 1.5\n")
        #expect(samples == [.init(name: "x", labels: ["reason": "a \"b\" \\ c", "le": "+Inf"], value: 3), .init(name: "plain", labels: [:], value: 1.5)])
    }
}
