import Foundation
import Logging
import MarqueeCore
import Synchronization

/// One JSON object per line: `{"ts":…,"level":…,"label":…,"message":…,<metadata>}` (MARQUEE_LOG_FORMAT=json).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    static let output = Mutex(FileHandle.standardOutput)

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: JSONObject = [
            "ts": .string(Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))),
            "level": .string(event.level.rawValue), "label": .string(label), "message": .string("\(event.message)"),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) { object[key] = Self.json(value) }
        let line = JSONValue.object(object).serialized() + "\n"
        Self.output.withLock { $0.write(Data(line.utf8)) }
    }

    static func json(_ value: Logger.MetadataValue) -> JSONValue {
        switch value {
        case .string(let s): return .string(s)
        case .stringConvertible(let c): return .string(c.description)
        case .array(let items): return .array(items.map(json))
        case .dictionary(let d): return .object(JSONObject(d.sorted(by: { $0.key < $1.key }).map { (key: $0.key, value: json($0.value)) }))
        }
    }
}

/// Chooses the log format once per process: `json` (JSONLogHandler) or `text` (swift-log's stream handler).
public enum LogFormat {
    private static let done = Atomic<Bool>(false)

    public static func bootstrap(_ format: String?) {
        guard done.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        if format?.lowercased() == "json" {
            LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        } else {
            LoggingSystem.bootstrap { StreamLogHandler.standardOutput(label: $0) }
        }
    }
}
