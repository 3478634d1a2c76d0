/// Parses the text form of PostgreSQL arrays (`array_out`) and composite values (`record_out`).
///
/// Arrays: `{1,2,NULL}`, `{{1,2},{3,4}}`, `{}`, `{"a b","c\"d",NULL,"NULL"}`, optionally preceded by their bounds
/// (`[0:1]={1,2}`, which `to_jsonb` ignores). An unquoted `NULL` is SQL NULL; quoted, it is the text. Records:
/// `(1,"a b",,"")`: an empty field is NULL, `""` the empty string, and `""` inside quotes one quote. Both return nil for
/// text that is not of that form, so the caller can fall back to the text itself.
enum PgArrayLiteral {
    indirect enum Node: Equatable {
        case element(String?)
        case array([Node])
    }

    /// The array's elements, nested as in the text; nil if the text is not an array literal.
    static func parse(_ text: String, delimiter: Character = ",") -> [Node]? {
        var scanner = Scanner(Array(text.utf8))
        scanner.skipSpaces()
        if scanner.peek == UInt8(ascii: "[") {
            // dimension decoration: `[l:u][l:u]=`
            while let byte = scanner.next(), byte != UInt8(ascii: "=") { _ = byte }
            scanner.skipSpaces()
        }
        guard let delimiter = delimiter.asciiValue, case .array(let items)? = scanner.array(delimiter: delimiter, depth: 0) else {
            return nil
        }
        scanner.skipSpaces()
        return scanner.isAtEnd ? items : nil
    }

    /// The fields of a record literal; nil if the text is not one.
    static func parseRecord(_ text: String) -> [String?]? {
        var bytes = Array(text.utf8)[...]
        guard bytes.first == UInt8(ascii: "("), bytes.last == UInt8(ascii: ")") else { return nil }
        bytes = bytes.dropFirst().dropLast()
        var fields: [String?] = []
        var current: [UInt8] = []
        var quotedOrEscaped = false
        var inQuotes = false
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if inQuotes {
                if byte == UInt8(ascii: "\\"), index + 1 < bytes.endIndex {
                    current.append(bytes[index + 1])
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") {
                    if index + 1 < bytes.endIndex, bytes[index + 1] == UInt8(ascii: "\"") {
                        current.append(byte)
                        index += 2
                        continue
                    }
                    inQuotes = false
                } else {
                    current.append(byte)
                }
            } else if byte == UInt8(ascii: "\"") {
                inQuotes = true
                quotedOrEscaped = true
            } else if byte == UInt8(ascii: "\\"), index + 1 < bytes.endIndex {
                current.append(bytes[index + 1])
                quotedOrEscaped = true
                index += 2
                continue
            } else if byte == UInt8(ascii: ",") {
                fields.append(current.isEmpty && !quotedOrEscaped ? nil : String(decoding: current, as: UTF8.self))
                current = []
                quotedOrEscaped = false
            } else {
                current.append(byte)
            }
            index += 1
        }
        guard !inQuotes else { return nil }
        fields.append(current.isEmpty && !quotedOrEscaped ? nil : String(decoding: current, as: UTF8.self))
        return fields
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var isAtEnd: Bool { index >= bytes.count }
        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func next() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func skipSpaces() {
            while let byte = peek, Self.isSpace(byte) { index += 1 }
        }

        static func isSpace(_ byte: UInt8) -> Bool {
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
                || byte == 0x0B || byte == 0x0C
        }

        /// `{...}` at the current position (arrays nest at most as deep as Postgres allows, 6, with room to spare).
        mutating func array(delimiter: UInt8, depth: Int) -> Node? {
            guard depth < 32, next() == UInt8(ascii: "{") else { return nil }
            var items: [Node] = []
            skipSpaces()
            if peek == UInt8(ascii: "}") {
                index += 1
                return .array([])
            }
            while true {
                skipSpaces()
                guard let byte = peek else { return nil }
                if byte == UInt8(ascii: "{") {
                    guard let nested = array(delimiter: delimiter, depth: depth + 1) else { return nil }
                    items.append(nested)
                } else {
                    guard let element = element(delimiter: delimiter) else { return nil }
                    items.append(.element(element))
                }
                skipSpaces()
                guard let separator = next() else { return nil }
                if separator == UInt8(ascii: "}") { return .array(items) }
                guard separator == delimiter else { return nil }
            }
        }

        /// One element: quoted, or unquoted up to the delimiter or `}` (trailing spaces dropped). `.some(nil)` is NULL.
        mutating func element(delimiter: UInt8) -> String?? {
            var out: [UInt8] = []
            var quotedOrEscaped = false
            if peek == UInt8(ascii: "\"") {
                index += 1
                quotedOrEscaped = true
                while true {
                    guard let byte = next() else { return nil }
                    if byte == UInt8(ascii: "\\") {
                        guard let escaped = next() else { return nil }
                        out.append(escaped)
                    } else if byte == UInt8(ascii: "\"") {
                        break
                    } else {
                        out.append(byte)
                    }
                }
                return .some(String(decoding: out, as: UTF8.self))
            }
            var trailingSpaces = 0
            while let byte = peek, byte != delimiter, byte != UInt8(ascii: "}") {
                index += 1
                if byte == UInt8(ascii: "\\") {
                    guard let escaped = next() else { return nil }
                    out.append(escaped)
                    quotedOrEscaped = true
                    trailingSpaces = 0
                } else if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "\"") {
                    return nil
                } else {
                    out.append(byte)
                    trailingSpaces = Self.isSpace(byte) ? trailingSpaces + 1 : 0
                }
            }
            out.removeLast(trailingSpaces)
            guard !out.isEmpty || quotedOrEscaped else { return nil }
            let text = String(decoding: out, as: UTF8.self)
            if !quotedOrEscaped && text.uppercased() == "NULL" { return .some(nil) }
            return .some(text)
        }
    }
}
