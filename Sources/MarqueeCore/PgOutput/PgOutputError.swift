/// An error raised while decoding `pgoutput` messages or assembling them into row changes.
///
/// Modelled on postgres-nio's `PSQLError`: a stable `code` to switch on, plus a human-readable `message`.
/// Decoding never traps on bad input; every malformed message ends up here.
public struct PgOutputError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable error category. Compare with `==` against the static members.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case truncatedMessage
            case malformedMessage
            case unknownMessageType
            case unsupportedMessageType
            case unknownRelation
            case columnCountMismatch
            case unexpectedMessage
            case transactionTooLarge
        }

        private let base: Base

        private init(_ base: Base) { self.base = base }

        /// The message ended before a field it announces (an empty message, a short integer, a missing string terminator,
        /// a column length pointing past the end).
        public static let truncatedMessage = Code(.truncatedMessage)
        /// The bytes are well delimited but not valid `pgoutput` (a bad tuple kind, a negative length, trailing bytes).
        public static let malformedMessage = Code(.malformedMessage)
        /// The first byte names no `pgoutput` message.
        public static let unknownMessageType = Code(.unknownMessageType)
        /// A real `pgoutput` message that protocol version 1 never sends (streaming, two-phase commit).
        public static let unsupportedMessageType = Code(.unsupportedMessageType)
        /// A row message refers to a relation id no Relation message has described.
        public static let unknownRelation = Code(.unknownRelation)
        /// A tuple carries a different number of columns than its relation declares.
        public static let columnCountMismatch = Code(.columnCountMismatch)
        /// A message arrived out of protocol order (a row change outside a transaction, a Commit without a Begin).
        public static let unexpectedMessage = Code(.unexpectedMessage)
        /// A transaction buffered more changes than the assembler's configured limit.
        public static let transactionTooLarge = Code(.transactionTooLarge)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// Byte offset into the message where decoding failed, when known.
    public var offset: Int?

    public init(code: Code, message: String, offset: Int? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
    }

    public var description: String {
        if let offset { return "PgOutputError(\(code)): \(message) at byte \(offset)" }
        return "PgOutputError(\(code)): \(message)"
    }

    static func truncated(_ what: String, offset: Int) -> PgOutputError {
        PgOutputError(code: .truncatedMessage, message: "message truncated while reading \(what)", offset: offset)
    }

    static func malformed(_ message: String, offset: Int? = nil) -> PgOutputError {
        PgOutputError(code: .malformedMessage, message: message, offset: offset)
    }
}
