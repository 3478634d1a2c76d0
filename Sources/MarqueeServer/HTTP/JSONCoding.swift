import Foundation
import Hummingbird
import NIOCore
import MarqueeCore

/// JSON in and out of the HTTP API.
enum JSONCoding {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatTimestamp(date))
        }
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseTimestamp(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "'\(text)' is not an ISO 8601 timestamp such as 2026-12-31T20:00:00Z")
            }
            return date
        }
        return decoder
    }()

    /// `2026-11-25T16:01:40.123Z`
    static func formatTimestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func parseTimestamp(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text))
    }

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Reads and decodes a JSON body; the error names the field that was wrong.
    static func decodeBody<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = 64 * 1024) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "body_too_large", "the request body is larger than \(limit / 1024) KiB")
        }
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("invalid_json", "the request needs a JSON body") }
        do {
            return try decoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch let DecodingError.keyNotFound(key, context) {
            throw APIError.badRequest("missing_field", "the field '\(path(context.codingPath + [key]))' is required")
        } catch let DecodingError.typeMismatch(_, context) {
            throw APIError.badRequest("invalid_field", "the field '\(path(context.codingPath))' has the wrong type: \(context.debugDescription)")
        } catch let DecodingError.valueNotFound(_, context) {
            throw APIError.badRequest("missing_field", "the field '\(path(context.codingPath))' must not be null")
        } catch let DecodingError.dataCorrupted(context) {
            if context.codingPath.isEmpty {
                guard (try? JSONValue.parse(Data(buffer.readableBytesView))) != nil else {
                    throw APIError.badRequest("invalid_json", "the body is not valid JSON")
                }
                throw APIError.badRequest("invalid_field", "a field has a value of the wrong kind: \(context.debugDescription)")
            }
            throw APIError.badRequest("invalid_field", "the field '\(path(context.codingPath))' is not valid: \(context.debugDescription)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}
