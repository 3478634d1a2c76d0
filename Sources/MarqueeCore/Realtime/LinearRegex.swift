/// A regular expression matcher whose cost is linear in the text: the pattern is compiled to a Thompson NFA and
/// simulated over the set of live states, one Unicode scalar at a time, without backtracking. One evaluation costs at
/// most about `stateCount × (scalars + 1)` steps whatever the pattern and the text, and never more than `maxSteps`.
///
/// The syntax is the part of PostgreSQL's advanced regular expressions (ARE, the `~` and `~*` operators) that row filters
/// use: literals; `.`; bracket expressions with ranges, negation and `[:alpha:]`-style classes (`[^a-z0-9_-]`,
/// `[[:digit:]]`, `[]a]`, `[\d.]`, `[.x.]` and `[=x=]` of one character); the escapes `\d \D \w \W \s \S`, character
/// entries (`\n \t \r \f \v \a \e \b` (backspace) `\B` (backslash) `\0 \xhh \uhhhh \Uhhhhhhhh \cX`) and `\` before any
/// other non-alphanumeric character; the constraints `^ $ \A \Z` and `\m \M \y \Y` (word start, word end, word boundary,
/// no word boundary); groups `(…)` and `(?:…)`; alternation `|`; quantifiers `* + ? {m} {m,} {m,n}` (m, n ≤ 255) and
/// their lazy forms (which only change which match is found, so they run as the greedy ones); comments `(?#…)`; the
/// directors `***:` and `***=` and the embedded options `(?i)`, `(?c)`, `(?q)` (and the default `(?s)`, `(?t)`) at the
/// start. A `{` not followed by a digit is a literal, as in PostgreSQL.
///
/// Refused, with a reason: back references (`\1`), lookahead and lookbehind constraints (`(?=`, `(?!`, `(?<=`, `(?<!`),
/// newline-sensitive and expanded-syntax options (`(?n)`, `(?w)`, `(?p)`, `(?x)`), BRE/ERE options, multi-character
/// collating elements, patterns longer than `maxPatternBytes`, and patterns whose compiled form has more than `maxStates`
/// states (counted repetitions are expanded, so `(a{100}){100}` is refused rather than built).
///
/// Matching follows PostgreSQL's default mode: a match anywhere in the text unless anchored, `.` and negated brackets
/// match a newline, `^` and `$` only at the start and end of the text. Classes read Unicode properties as a UTF-8
/// database does (`[[:alpha:]]` and `\w` include `é`), except that digits are ASCII. Case-insensitive matching works
/// as `~*`: a pattern character also matches its simple lowercase and uppercase forms, and a bracket expression or class
/// matches a character if it holds the character or one of those forms (negation applies after that, so `[^a]` matches
/// neither `a` nor `A`). A few characters whose case forms are not each other's (`ß`, `ſ`) may differ from PostgreSQL.
///
/// An evaluation that runs out of `maxSteps` answers nil (unknown) rather than a guess.
public struct LinearRegex: Sendable {
    /// The longest pattern accepted, in UTF-8 bytes.
    public static let maxPatternBytes = 256
    /// The most NFA states a compiled pattern may have.
    public static let maxStates = 1000
    /// The most steps (a state visited at one text position) one evaluation may take; `matches` gives up with nil when
    /// they run out. At `maxStates` that is a text of about 1,000 characters; simpler patterns read proportionally more.
    public static let maxSteps = 1_000_000

    /// Why a pattern was refused.
    public struct SyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
        public enum Kind: Sendable, Hashable {
            /// Not a valid regular expression (PostgreSQL refuses it too).
            case invalid
            /// Valid for PostgreSQL but outside the supported subset.
            case unsupported
            /// Longer than `maxPatternBytes`, or more than `maxStates` states once compiled.
            case tooLarge
        }
        public var kind: Kind
        public var reason: String
        public init(_ kind: Kind, _ reason: String) {
            self.kind = kind
            self.reason = reason
        }
        public var description: String { reason }
    }

    let program: [Instruction]
    let sets: [CharSet]
    let caseInsensitive: Bool
    /// Every match starts at the start of the text, so a search needs no new thread after position 0.
    let anchoredAtStart: Bool

    /// Compiles an ARE pattern as `~` (or `~*` when `caseInsensitive`) reads it.
    public init(_ pattern: String, caseInsensitive: Bool = false) throws(SyntaxError) {
        try Self.checkLength(pattern)
        var parser = Parser(Array(pattern.unicodeScalars), caseInsensitive: caseInsensitive)
        let node = try parser.parseAll()
        try self.init(node: node, caseInsensitive: parser.caseInsensitive)
    }

    /// Compiles a SQL LIKE pattern as `like` (or `ilike` when `caseInsensitive`) reads it: the whole text must match, `%`
    /// (or `*`, as PostgREST allows) is any run of characters, `_` one character, `\` makes the next one literal.
    public init(likePattern pattern: String, caseInsensitive: Bool = false) throws(SyntaxError) {
        try Self.checkLength(pattern)
        var items: [Node] = [.assertion(.start)]
        var escaped = false
        for scalar in pattern.unicodeScalars {
            if escaped {
                items.append(.literal(scalar))
                escaped = false
            } else if scalar == "\\" {
                escaped = true
            } else if scalar == "%" || scalar == "*" {
                // A run of wildcards is one `.*`.
                if case .repetition = items.last {} else { items.append(.repetition(.any, 0, nil)) }
            } else {
                items.append(scalar == "_" ? .any : .literal(scalar))
            }
        }
        if escaped { throw SyntaxError(.invalid, "LIKE pattern must not end with escape character") }
        items.append(.assertion(.end))
        try self.init(node: .concatenation(items), caseInsensitive: caseInsensitive)
    }

    private init(node: Node, caseInsensitive: Bool) throws(SyntaxError) {
        let size = node.size(limit: Self.maxStates)
        if size > Self.maxStates - 1 {
            throw SyntaxError(
                .tooLarge,
                "the pattern needs more than \(Self.maxStates) states once its counted repetitions are expanded; use smaller bounds or fewer nested repetitions"
            )
        }
        var compiler = Compiler(caseInsensitive: caseInsensitive)
        compiler.emit(node)
        compiler.program.append(.match)
        program = compiler.program
        sets = compiler.sets
        self.caseInsensitive = caseInsensitive
        anchoredAtStart = node.isAnchoredAtStart
    }

    private static func checkLength(_ pattern: String) throws(SyntaxError) {
        if pattern.utf8.count > maxPatternBytes {
            throw SyntaxError(.tooLarge, "the pattern is \(pattern.utf8.count) bytes long; the maximum is \(maxPatternBytes)")
        }
    }

    /// The number of NFA states the pattern compiled to.
    public var stateCount: Int { program.count }

    /// Whether the pattern matches the text (anywhere, unless anchored); nil if the evaluation ran out of `maxSteps`.
    public func matches(_ text: String) -> Bool? { matches(text, maxSteps: Self.maxSteps) }

    func matches(_ text: String, maxSteps: Int) -> Bool? { run(text.unicodeScalars, budget: maxSteps) }
}

// MARK: - Syntax tree

extension LinearRegex {
    enum Assertion: Sendable, Hashable {
        case start, end, wordStart, wordEnd, wordBoundary, notWordBoundary
    }

    indirect enum Node: Sendable {
        case empty
        case literal(Unicode.Scalar)
        case any
        case set(CharSet)
        case assertion(Assertion)
        case concatenation([Node])
        case alternation([Node])
        /// `max` nil: unbounded.
        case repetition(Node, Int, Int?)

        /// The number of instructions `Compiler.emit` makes of the node, or some number above `limit` once past it.
        func size(limit: Int) -> Int {
            func add(_ a: Int, _ b: Int) -> Int { min(a + b, limit + 1) }
            func multiply(_ a: Int, _ b: Int) -> Int { a == 0 || b == 0 ? 0 : a > (limit + 1) / b ? limit + 1 : min(a * b, limit + 1) }
            switch self {
            case .empty: return 0
            case .literal, .any, .set, .assertion: return 1
            case .concatenation(let items): return items.reduce(0) { add($0, $1.size(limit: limit)) }
            case .alternation(let items):
                return items.reduce(2 * (items.count - 1)) { add($0, $1.size(limit: limit)) }
            case .repetition(let node, let lower, let upper):
                let one = node.size(limit: limit)
                let required = multiply(one, lower)
                guard let upper else { return add(required, lower == 0 ? add(one, 2) : 1) }
                return add(required, multiply(add(one, 1), upper - lower))
            }
        }

        /// Whether every match must start at the start of the text.
        var isAnchoredAtStart: Bool {
            switch self {
            case .assertion(.start): return true
            case .concatenation(let items):
                for item in items {
                    if item.isAnchoredAtStart { return true }
                    // Only zero-width items may come before the anchor.
                    guard case .assertion = item else { return false }
                }
                return false
            case .alternation(let items): return !items.isEmpty && items.allSatisfy(\.isAnchoredAtStart)
            case .repetition(let node, let lower, _): return lower > 0 && node.isAnchoredAtStart
            default: return false
            }
        }
    }
}

// MARK: - Parsing

extension LinearRegex {
    struct Parser {
        let scalars: [Unicode.Scalar]
        var index = 0
        var caseInsensitive: Bool

        init(_ scalars: [Unicode.Scalar], caseInsensitive: Bool) {
            self.scalars = scalars
            self.caseInsensitive = caseInsensitive
        }

        var peek: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }

        func peek(_ offset: Int) -> Unicode.Scalar? { index + offset < scalars.count ? scalars[index + offset] : nil }

        mutating func next() -> Unicode.Scalar? {
            guard index < scalars.count else { return nil }
            defer { index += 1 }
            return scalars[index]
        }

        mutating func consume(_ text: String) -> Bool {
            let wanted = Array(text.unicodeScalars)
            guard index + wanted.count <= scalars.count, Array(scalars[index..<(index + wanted.count)]) == wanted else { return false }
            index += wanted.count
            return true
        }

        static func invalid(_ reason: String) -> SyntaxError { SyntaxError(.invalid, reason) }
        static func unsupported(_ reason: String) -> SyntaxError { SyntaxError(.unsupported, reason) }

        mutating func parseAll() throws(SyntaxError) -> Node {
            if consume("***=") { return .concatenation(scalars[index...].map(Node.literal)) }
            _ = consume("***:")
            if peek == "(", peek(1) == "?", let letter = peek(2), letter.properties.isAlphabetic {
                index += 2
                while true {
                    guard let option = next() else { throw Self.invalid("parentheses () not balanced") }
                    if option == ")" { break }
                    switch option {
                    case "i": caseInsensitive = true
                    case "c": caseInsensitive = false
                    case "s", "t": break
                    case "q":
                        guard let close = scalars[index...].firstIndex(of: ")") else { throw Self.invalid("parentheses () not balanced") }
                        index = close + 1
                        return .concatenation(scalars[index...].map(Node.literal))
                    case "n", "m", "p", "w": throw Self.unsupported("newline-sensitive matching (option \(option)) is not supported")
                    case "x": throw Self.unsupported("expanded syntax (option x) is not supported")
                    case "b", "e": throw Self.unsupported("basic and extended syntax (option \(option)) are not supported")
                    default: throw Self.invalid("invalid embedded option \(option)")
                    }
                }
            }
            let node = try parseAlternation()
            if peek == ")" { throw Self.invalid("parentheses () not balanced") }
            return node
        }

        mutating func parseAlternation() throws(SyntaxError) -> Node {
            var branches = [try parseBranch()]
            while peek == "|" {
                index += 1
                branches.append(try parseBranch())
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func parseBranch() throws(SyntaxError) -> Node {
            var items: [Node] = []
            while true {
                try skipComments()
                guard let upcoming = peek, upcoming != "|", upcoming != ")" else { break }
                let start = index
                let atom = try parseAtom()
                // A constraint written bare takes no quantifier; in a group it may (`(^)*`).
                let bare = scalars[start] != "("
                items.append(try parseQuantifiers(atom, bare: bare))
            }
            return items.isEmpty ? .empty : items.count == 1 ? items[0] : .concatenation(items)
        }

        /// Skips `(?#…)` comments, which PostgreSQL drops before it parses (`a(?#x)*` is `a*`).
        mutating func skipComments() throws(SyntaxError) {
            while peek == "(", peek(1) == "?", peek(2) == "#" {
                guard let close = scalars[index...].firstIndex(of: ")") else { throw Self.invalid("parentheses () not balanced") }
                index = close + 1
            }
        }

        mutating func parseAtom() throws(SyntaxError) -> Node {
            guard let scalar = next() else { throw Self.invalid("unexpected end of pattern") }
            switch scalar {
            case "(":
                if peek == "?" {
                    switch peek(1) {
                    case ":": index += 2
                    case "=", "!", "<": throw Self.unsupported("lookahead and lookbehind constraints are not supported")
                    default: throw Self.invalid("invalid use of (? : embedded options are only allowed at the start of the pattern")
                    }
                }
                let inner = try parseAlternation()
                guard next() == ")" else { throw Self.invalid("parentheses () not balanced") }
                return inner
            case ".": return .any
            case "[": return try parseBracket()
            case "\\": return try parseEscape()
            case "^": return .assertion(.start)
            case "$": return .assertion(.end)
            case "*", "+", "?": throw Self.invalid("quantifier operand invalid")
            case "{" where peek.map { ("0"..."9").contains($0) } == true:
                throw Self.invalid("quantifier operand invalid")
            default: return .literal(scalar)
            }
        }

        mutating func parseQuantifiers(_ atom: Node, bare: Bool) throws(SyntaxError) -> Node {
            try skipComments()
            guard let (lower, upper) = try parseQuantifier() else { return atom }
            if bare, case .assertion = atom { throw Self.invalid("quantifier operand invalid") }
            try skipComments()
            if peek == "?" { index += 1 }  // lazy: same match or no match as greedy
            try skipComments()
            if try parseQuantifier() != nil { throw Self.invalid("quantifier operand invalid") }
            return .repetition(atom, lower, upper)
        }

        /// `(min, max)` of a quantifier at the current position, consumed; nil if there is none.
        mutating func parseQuantifier() throws(SyntaxError) -> (Int, Int?)? {
            switch peek {
            case "*":
                index += 1
                return (0, nil)
            case "+":
                index += 1
                return (1, nil)
            case "?":
                index += 1
                return (0, 1)
            case "{":
                guard let digit = peek(1), ("0"..."9").contains(digit) else { return nil }
                index += 1
                let lower = try parseCount()
                var upper: Int? = lower
                if peek == "," {
                    index += 1
                    upper = peek.map { ("0"..."9").contains($0) } == true ? try parseCount() : nil
                }
                guard let close = next() else { throw Self.invalid("braces {} not balanced") }
                guard close == "}" else { throw Self.invalid("invalid repetition count(s)") }
                if let upper, upper < lower { throw Self.invalid("invalid repetition count(s)") }
                return (lower, upper)
            default: return nil
            }
        }

        mutating func parseCount() throws(SyntaxError) -> Int {
            var value = 0
            while let digit = peek, ("0"..."9").contains(digit) {
                index += 1
                value = value * 10 + Int(digit.value - 48)
                if value > 255 { throw Self.invalid("invalid repetition count(s): bounds are at most 255") }
            }
            return value
        }

        mutating func parseEscape() throws(SyntaxError) -> Node {
            guard let scalar = next() else { throw Self.invalid("invalid escape \\ sequence: trailing backslash") }
            switch scalar {
            case "d": return .set(CharSet(classes: [(.digit, false)]))
            case "D": return .set(CharSet(classes: [(.digit, true)]))
            case "s": return .set(CharSet(classes: [(.space, false)]))
            case "S": return .set(CharSet(classes: [(.space, true)]))
            case "w": return .set(CharSet(classes: [(.word, false)]))
            case "W": return .set(CharSet(classes: [(.word, true)]))
            case "A": return .assertion(.start)
            case "Z": return .assertion(.end)
            case "m": return .assertion(.wordStart)
            case "M": return .assertion(.wordEnd)
            case "y": return .assertion(.wordBoundary)
            case "Y": return .assertion(.notWordBoundary)
            case "1"..."9": throw Self.unsupported("back references (\\\(scalar)) are not supported")
            default: return .literal(try characterEntry(scalar))
            }
        }

        /// The character an escape other than a class or constraint stands for, after the `\` and `scalar`.
        mutating func characterEntry(_ scalar: Unicode.Scalar) throws(SyntaxError) -> Unicode.Scalar {
            switch scalar {
            case "a": return "\u{07}"
            case "b": return "\u{08}"
            case "B": return "\\"
            case "e": return "\u{1B}"
            case "f": return "\u{0C}"
            case "n": return "\n"
            case "r": return "\r"
            case "t": return "\t"
            case "v": return "\u{0B}"
            case "c":
                guard let control = next() else { throw Self.invalid("invalid escape \\ sequence: \\c needs a character") }
                return Unicode.Scalar(control.value & 0x1F) ?? "\0"
            case "0":
                var value: UInt32 = 0
                for _ in 0..<2 {
                    guard let digit = peek, ("0"..."7").contains(digit) else { break }
                    index += 1
                    value = value * 8 + digit.value - 48
                }
                return Unicode.Scalar(value) ?? "\0"
            case "x": return try hex(minimum: 1, maximum: 8, escape: "x")
            case "u": return try hex(minimum: 4, maximum: 4, escape: "u")
            case "U": return try hex(minimum: 8, maximum: 8, escape: "U")
            default:
                // As PostgreSQL: only an ASCII letter or digit makes an unknown escape; `\` before anything else is literal.
                if scalar.isASCII, scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) {
                    throw Self.invalid("invalid escape \\ sequence: \\\(scalar)")
                }
                return scalar
            }
        }

        mutating func hex(minimum: Int, maximum: Int, escape: String) throws(SyntaxError) -> Unicode.Scalar {
            var (value, count): (UInt32, Int) = (0, 0)
            while count < maximum, let digit = peek, let nibble = digit.isASCII ? Int(String(digit), radix: 16) : nil {
                index += 1
                count += 1
                value = value * 16 + UInt32(nibble)
            }
            guard count >= minimum, let scalar = Unicode.Scalar(value) else {
                throw Self.invalid(
                    "invalid escape \\ sequence: \\\(escape) needs \(minimum == maximum ? "\(minimum)" : "1 to \(maximum)") hex digits of a valid character"
                )
            }
            return scalar
        }

        mutating func parseBracket() throws(SyntaxError) -> Node {
            let unbalanced = Self.invalid("brackets [] not balanced")
            var set = CharSet()
            if peek == "^" {
                index += 1
                set.negated = true
            }
            var first = true
            while true {
                guard let scalar = next() else { throw unbalanced }
                if scalar == "]" && !first { break }
                first = false
                let low: Unicode.Scalar
                switch try bracketItem(scalar) {
                case .scalar(let s): low = s
                case .named(let name, let negated):
                    set.classes.append((name, negated))
                    continue
                }
                // A range, unless `-` is the last character before `]`.
                if peek == "-", let after = peek(1), after != "]" {
                    index += 1
                    guard let end = next() else { throw unbalanced }
                    guard case .scalar(let high) = try bracketItem(end) else { throw Self.invalid("invalid character range") }
                    if high.value < low.value { throw Self.invalid("invalid character range") }
                    set.ranges.append(low.value...high.value)
                    if peek == "-", peek(1) != "]" { throw Self.invalid("invalid character range") }
                    continue
                }
                set.ranges.append(low.value...low.value)
            }
            return .set(set)
        }

        enum BracketItem {
            case scalar(Unicode.Scalar)
            case named(CharSet.Named, negated: Bool)
        }

        mutating func bracketItem(_ scalar: Unicode.Scalar) throws(SyntaxError) -> BracketItem {
            switch scalar {
            case "[" where peek == ":":
                index += 1
                let name = try bracketWord(terminator: ":")
                guard let named = CharSet.Named(rawValue: name) else { throw Self.invalid("invalid character class [:\(name):]") }
                return .named(named, negated: false)
            case "[" where peek == "." || peek == "=":
                let kind = next() ?? "."
                let text = try bracketWord(terminator: kind)
                let scalars = Array(text.unicodeScalars)
                guard scalars.count == 1 else { throw Self.invalid("invalid collating element [\(kind)\(text)\(kind)]") }
                return .scalar(scalars[0])
            case "\\":
                guard let escaped = next() else { throw Self.invalid("brackets [] not balanced") }
                switch escaped {
                case "d": return .named(.digit, negated: false)
                case "D": return .named(.digit, negated: true)
                case "s": return .named(.space, negated: false)
                case "S": return .named(.space, negated: true)
                case "w": return .named(.word, negated: false)
                case "W": return .named(.word, negated: true)
                case "1"..."9": throw Self.unsupported("back references (\\\(escaped)) are not supported")
                default: return .scalar(try characterEntry(escaped))
                }
            default: return .scalar(scalar)
            }
        }

        /// The text up to `terminator` followed by `]`, both consumed.
        mutating func bracketWord(terminator: Unicode.Scalar) throws(SyntaxError) -> String {
            var text = String.UnicodeScalarView()
            while let scalar = next() {
                if scalar == terminator, peek == "]" {
                    index += 1
                    return String(text)
                }
                text.append(scalar)
            }
            throw Self.invalid("brackets [] not balanced")
        }
    }
}

// MARK: - Character sets

extension LinearRegex {
    struct CharSet: Sendable {
        enum Named: String, Sendable {
            case alpha, digit, alnum, upper, lower, space, blank, punct, xdigit, cntrl, print, graph, word

            func contains(_ s: Unicode.Scalar) -> Bool {
                if s.isASCII {
                    let v = s.value
                    let isDigit = (48...57).contains(v)
                    let isAlpha = (65...90).contains(v) || (97...122).contains(v)
                    switch self {
                    case .alpha: return isAlpha
                    case .digit: return isDigit
                    case .alnum: return isAlpha || isDigit
                    case .word: return isAlpha || isDigit || v == 95
                    case .upper: return (65...90).contains(v)
                    case .lower: return (97...122).contains(v)
                    case .space: return v == 32 || (9...13).contains(v)
                    case .blank: return v == 32 || v == 9
                    case .punct: return (33...126).contains(v) && !isAlpha && !isDigit
                    case .xdigit: return isDigit || (65...70).contains(v) || (97...102).contains(v)
                    case .cntrl: return v < 32 || v == 127
                    case .print: return (32...126).contains(v)
                    case .graph: return (33...126).contains(v)
                    }
                }
                let properties = s.properties
                switch self {
                case .alpha: return properties.isAlphabetic
                case .digit: return false
                case .alnum, .word: return properties.isAlphabetic || properties.numericType == .decimal
                case .upper: return properties.isUppercase
                case .lower: return properties.isLowercase
                // No-break spaces are not spaces, as in glibc's UTF-8 locales.
                case .space: return properties.isWhitespace && ![0x85, 0xA0, 0x2007, 0x202F].contains(s.value)
                case .blank: return properties.generalCategory == .spaceSeparator && ![0xA0, 0x2007, 0x202F].contains(s.value)
                case .punct:
                    switch properties.generalCategory {
                    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
                        .finalPunctuation, .otherPunctuation, .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
                        return true
                    default: return false
                    }
                case .xdigit: return false
                case .cntrl: return properties.generalCategory == .control
                case .print, .graph:
                    switch properties.generalCategory {
                    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator: return false
                    case .spaceSeparator: return self == .print
                    default: return true
                    }
                }
            }
        }

        var negated = false
        var ranges: [ClosedRange<UInt32>] = []
        var classes: [(Named, negated: Bool)] = []

        init(negated: Bool = false, classes: [(Named, negated: Bool)] = []) {
            self.negated = negated
            self.classes = classes
        }

        /// Bit `v` set: ASCII scalar `v` is among the listed ranges and classes (before negation). Set by `finished`.
        var ascii: (UInt64, UInt64) = (0, 0)

        /// The set with its ASCII bitmap filled in.
        func finished() -> CharSet {
            var set = self
            set.ascii = (0, 0)
            for v in UInt32(0)..<128 where slowLists(Unicode.Scalar(UInt8(v))) {
                if v < 64 { set.ascii.0 |= 1 << UInt64(v) } else { set.ascii.1 |= 1 << UInt64(v - 64) }
            }
            return set
        }

        /// Whether the scalar is among the listed ranges and classes, before negation.
        @inline(__always) func lists(_ s: Unicode.Scalar) -> Bool {
            let v = s.value
            if v < 64 { return ascii.0 & (1 << UInt64(v)) != 0 }
            if v < 128 { return ascii.1 & (1 << UInt64(v - 64)) != 0 }
            return slowLists(s)
        }

        private func slowLists(_ s: Unicode.Scalar) -> Bool {
            for range in ranges where range.contains(s.value) { return true }
            for (named, negated) in classes where named.contains(s) != negated { return true }
            return false
        }

        /// Whether the text scalar matches; `cases`: its simple lowercase and uppercase forms when matching
        /// case-insensitively, else nil.
        @inline(__always) func matches(_ s: Unicode.Scalar, cases: (Unicode.Scalar, Unicode.Scalar)?) -> Bool {
            guard let cases else { return lists(s) != negated }
            return (lists(s) || lists(cases.0) || lists(cases.1)) != negated
        }
    }

    /// A scalar's simple lowercase and uppercase forms (the scalar itself where it has none; a full mapping of more than
    /// one scalar, `İ` → `i̇`, counts as none).
    static func caseForms(of scalar: Unicode.Scalar) -> (lower: Unicode.Scalar, upper: Unicode.Scalar) {
        if scalar.isASCII {
            let v = scalar.value
            if (65...90).contains(v) { return (Unicode.Scalar(UInt8(v + 32)), scalar) }
            if (97...122).contains(v) { return (scalar, Unicode.Scalar(UInt8(v - 32))) }
            return (scalar, scalar)
        }
        func simple(_ mapping: String) -> Unicode.Scalar {
            let scalars = mapping.unicodeScalars
            return scalars.count == 1 ? scalars.first ?? scalar : scalar
        }
        return (simple(scalar.properties.lowercaseMapping), simple(scalar.properties.uppercaseMapping))
    }
}

// MARK: - Compiling

extension LinearRegex {
    enum Instruction: Sendable {
        case literal(Unicode.Scalar)
        /// Consumes a literal case-insensitively: the pattern's scalar or one of its case forms, as PostgreSQL's `~*`.
        case literalCases(Unicode.Scalar, Unicode.Scalar, Unicode.Scalar)
        case any
        /// Consumes a scalar of `sets[index]`.
        case set(Int32)
        case assertion(Assertion)
        /// Continues at both targets.
        case split(Int32, Int32)
        case jump(Int32)
        case match
    }

    struct Compiler {
        let caseInsensitive: Bool
        var program: [Instruction] = []
        var sets: [CharSet] = []
        var here: Int32 { Int32(program.count) }

        mutating func emit(_ node: Node) {
            switch node {
            case .empty: break
            case .literal(let s):
                let (lower, upper) = LinearRegex.caseForms(of: s)
                program.append(caseInsensitive && (lower != s || upper != s) ? .literalCases(s, lower, upper) : .literal(s))
            case .any: program.append(.any)
            case .set(let set):
                sets.append(set.finished())
                program.append(.set(Int32(sets.count - 1)))
            case .assertion(let assertion): program.append(.assertion(assertion))
            case .concatenation(let items): for item in items { emit(item) }
            case .alternation(let items):
                // split L1, next; L1: a; jump end; next: split L2, …; last item; end:
                var jumps: [Int] = []
                for (offset, item) in items.enumerated() {
                    if offset == items.count - 1 {
                        emit(item)
                        break
                    }
                    let split = program.count
                    program.append(.split(here + 1, 0))
                    emit(item)
                    jumps.append(program.count)
                    program.append(.jump(0))
                    program[split] = .split(Int32(split + 1), here)
                }
                for jump in jumps { program[jump] = .jump(here) }
            case .repetition(let inner, let lower, let upper):
                for _ in 0..<lower { emit(inner) }
                guard let upper else {
                    if lower > 0 {
                        // e+ tail: the last required copy loops back.
                        let start = program.count - inner.size(limit: Int.max - 1)
                        program.append(.split(Int32(start), here + 1))
                    } else {
                        let split = program.count
                        program.append(.split(here + 1, 0))
                        emit(inner)
                        program.append(.jump(Int32(split)))
                        program[split] = .split(Int32(split + 1), here)
                    }
                    return
                }
                // Optional copies, each skipping to the end: split L, end; L: e; split L', end; …
                var splits: [Int] = []
                for _ in lower..<upper {
                    splits.append(program.count)
                    program.append(.split(here + 1, 0))
                    emit(inner)
                }
                for split in splits { program[split] = .split(Int32(split + 1), here) }
            }
        }
    }
}

// MARK: - Simulation

extension LinearRegex {
    /// Runs the NFA over the text with `budget` steps, in scratch memory sized by the program.
    func run(_ text: String.UnicodeScalarView, budget: Int) -> Bool? {
        let count = program.count
        return program.withUnsafeBufferPointer { program in
            sets.withUnsafeBufferPointer { sets in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: 4 * count + 2) { lists in
                    withUnsafeTemporaryAllocation(of: Int.self, capacity: count) { marks in
                        guard let lists = lists.baseAddress, let marksBase = marks.baseAddress else { return nil }
                        marks.initialize(repeating: -1)
                        var simulation = Simulation(
                            program: program, sets: sets, caseInsensitive: caseInsensitive, current: lists, next: lists + count,
                            stack: lists + 2 * count, marks: marksBase, budget: budget)
                        return simulation.run(text, anchored: anchoredAtStart)
                    }
                }
            }
        }
    }

    /// The NFA run over a text: the live states before each scalar, without duplicates, advanced all together.
    struct Simulation {
        let program: UnsafeBufferPointer<Instruction>
        let sets: UnsafeBufferPointer<CharSet>
        let caseInsensitive: Bool
        /// The states waiting for the next scalar, and those after it; `count` states each at most.
        var current: UnsafeMutablePointer<Int32>
        var next: UnsafeMutablePointer<Int32>
        var (currentCount, nextCount) = (0, 0)
        /// Room for `2 × count + 2` states: each state visited once pushes at most two.
        let stack: UnsafeMutablePointer<Int32>
        /// `marks[pc] == generation`: pc is already in the list being built.
        let marks: UnsafeMutablePointer<Int>
        var generation = 0
        var budget: Int

        init(
            program: UnsafeBufferPointer<Instruction>, sets: UnsafeBufferPointer<CharSet>, caseInsensitive: Bool,
            current: UnsafeMutablePointer<Int32>,
            next: UnsafeMutablePointer<Int32>, stack: UnsafeMutablePointer<Int32>, marks: UnsafeMutablePointer<Int>, budget: Int
        ) {
            (self.program, self.sets, self.caseInsensitive, self.budget) = (program, sets, caseInsensitive, budget)
            (self.current, self.next, self.stack, self.marks) = (current, next, stack, marks)
        }

        /// The text position between `previous` and `upcoming` (nil at the ends), for constraints.
        struct Position {
            var previous: Unicode.Scalar?
            var upcoming: Unicode.Scalar?
            var atStart: Bool
        }

        static func isWord(_ s: Unicode.Scalar?) -> Bool { s.map { CharSet.Named.word.contains($0) } ?? false }

        static func holds(_ assertion: Assertion, at position: Position) -> Bool {
            switch assertion {
            case .start: return position.atStart
            case .end: return position.upcoming == nil
            case .wordStart: return !isWord(position.previous) && isWord(position.upcoming)
            case .wordEnd: return isWord(position.previous) && !isWord(position.upcoming)
            case .wordBoundary: return isWord(position.previous) != isWord(position.upcoming)
            case .notWordBoundary: return isWord(position.previous) == isWord(position.upcoming)
            }
        }

        /// Adds `pc` and every state reachable from it without consuming a scalar to the `next` list: true if that
        /// reaches `match`, nil if the budget ran out.
        mutating func add(_ start: Int32, at position: Position) -> Bool? {
            var depth = 1
            stack[0] = start
            while depth > 0 {
                depth -= 1
                let pc = Int(stack[depth])
                if marks[pc] == generation { continue }
                marks[pc] = generation
                budget -= 1
                if budget < 0 { return nil }
                switch program[pc] {
                case .match: return true
                case .jump(let target):
                    stack[depth] = target
                    depth += 1
                case .split(let first, let second):
                    stack[depth] = second
                    stack[depth + 1] = first
                    depth += 2
                case .assertion(let assertion):
                    guard Self.holds(assertion, at: position) else { continue }
                    stack[depth] = Int32(pc + 1)
                    depth += 1
                case .literal, .literalCases, .any, .set:
                    next[nextCount] = Int32(pc)
                    nextCount += 1
                }
            }
            return false
        }

        mutating func run(_ text: String.UnicodeScalarView, anchored: Bool) -> Bool? {
            var iterator = text.makeIterator()
            var position = Position(previous: nil, upcoming: iterator.next(), atStart: true)
            while true {
                if !anchored || position.atStart {
                    // A match may start here: the unanchored search of `~`. (`add` builds `next`: swap around it.)
                    swap(&current, &next)
                    (currentCount, nextCount) = (nextCount, currentCount)
                    defer {
                        swap(&current, &next)
                        (currentCount, nextCount) = (nextCount, currentCount)
                    }
                    guard let found = add(0, at: position) else { return nil }
                    if found { return true }
                }
                guard let scalar = position.upcoming, currentCount > 0 || !anchored else { return false }
                let cases = caseInsensitive ? LinearRegex.caseForms(of: scalar) : nil
                position = Position(previous: scalar, upcoming: iterator.next(), atStart: false)
                generation += 1
                nextCount = 0
                for index in 0..<currentCount {
                    budget -= 1
                    if budget < 0 { return nil }
                    let pc = Int(current[index])
                    let accepts: Bool
                    switch program[pc] {
                    case .literal(let expected): accepts = expected == scalar
                    case .literalCases(let a, let b, let c): accepts = a == scalar || b == scalar || c == scalar
                    case .any: accepts = true
                    case .set(let set): accepts = sets[Int(set)].matches(scalar, cases: cases)
                    default: accepts = false
                    }
                    guard accepts else { continue }
                    guard let found = add(Int32(pc + 1), at: position) else { return nil }
                    if found { return true }
                }
                swap(&current, &next)
                currentCount = nextCount
            }
        }
    }
}
