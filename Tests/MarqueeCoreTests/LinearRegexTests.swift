import Foundation
import Testing

@testable import MarqueeCore

/// The result of `~` (or `~*`): nil when the pattern is refused.
private func search(_ pattern: String, _ text: String, caseInsensitive: Bool = false) -> Bool? {
    (try? LinearRegex(pattern, caseInsensitive: caseInsensitive))?.matches(text)
}

private func refusal(_ pattern: String) -> LinearRegex.SyntaxError? {
    do {
        _ = try LinearRegex(pattern)
        return nil
    } catch {
        return error
    }
}

private func like(_ pattern: String, _ text: String, caseInsensitive: Bool = false) -> Bool? {
    (try? LinearRegex(likePattern: pattern, caseInsensitive: caseInsensitive))?.matches(text)
}

private let uuid = "639f86b1-738b-43ed-bb09-c8d3f3bafa30"

@Suite struct LinearRegexTests {
    /// Answers PostgreSQL 15 gives for `text ~ pattern`.
    @Test(arguments: [
        // (pattern, text, expected)
        ("abc", "xxabcxx", true), ("abc", "ab", false), ("", "anything", true), ("", "", true), ("a|", "zzz", true),
        ("^abc", "abcd", true), ("^abc", "xabc", false), ("abc$", "xabc", true), ("abc$", "abcx", false), ("^$", "", true),
        ("a$", "a\n", false), ("a.c", "a\nc", true), ("a^b", "a^b", false), ("a\\^b", "a^b", true), ("\\Aab\\Z", "ab", true),
        ("h.y", "hey", true), ("h\\.y", "hey", false), ("h\\.y", "h.y", true), ("colou?r", "color", true), ("colou?r", "colouur", false),
        ("^a*$", "", true), ("^a+$", "", false), ("^(ab)+$", "ababab", true), ("^(ab)+$", "ababa", false), ("^(?:a|bc)*d$", "abcabcd", true),
        ("^a{3}$", "aaa", true), ("^a{3}$", "aaaa", false), ("^a{2,}$", "a", false), ("^a{2,}$", "aaaaa", true), ("^a{1,2}$", "aaa", false),
        ("^a{0}b$", "b", true), ("^(a|b){2,3}$", "abab", false), ("^(a|b){2,3}$", "bab", true), ("^a*?b+?$", "aabb", true),
        ("^a{2}?$", "aa", true), ("a{,3}", "a{,3}", true), ("a{,3}", "aaa", false), ("x{", "x{", true), ("}", "}", true), ("]", "]", true),
        ("^[0-9]{3}$", "123", true), ("[0-9]{3}", "ab12", false), ("^[^a-z0-9_-]+$", "ABC!", true), ("^[^a-z0-9_-]+$", "AB-C", false),
        ("[]a]", "]", true), ("[^]a]", "]a", false), ("^[a-]+$", "a-a", true), ("^[-a]+$", "--", true), ("[--/]", ".", true),
        ("^[[:alpha:]]+$", "abcXYZ", true), ("[[:digit:]]", "abc", false), ("^[[:alnum:]_]+$", "a_1", true), ("[[:space:]]", "a\tb", true),
        ("^[[:upper:]]+$", "ABC", true), ("^[[:lower:]]+$", "abC", false), ("^[[:xdigit:]]+$", "00ff", true), ("[[:punct:]]", "a!", true),
        ("[[=a=]]", "a", true), ("[[.-.]]", "-", true), ("^\\d+$", "2024", true), ("\\D", "123", false), ("^\\w+$", "snake_case9", true),
        ("\\W", "abc", false), ("\\s", "a b", true), ("\\S", "   ", false), ("^[\\d.]+$", "1.5", true), ("^[\\D]+$", "ab", true),
        ("\\x41", "A", true), ("\\u0041", "A", true), ("\\t", "\t", true), ("\\B", "\\", true), ("\\\\", "\\", true), ("\\.", ".", true),
        ("\\yfoo\\y", "a foo b", true), ("\\yfoo\\y", "afoob", false), ("\\mfoo", "x foo", true), ("foo\\M", "foox", false),
        ("o\\Yo", "foo", true), ("(^)*a", "ba", true), ("a(?#note)*b", "aaab", true), ("***=a.b", "a.b", true), ("***=a.b", "axb", false),
        ("***:^a", "ab", true), ("(?i)ABC", "xabcx", true), ("^([0-9a-f-]+)+Z$", uuid, false), ("^([0-9a-f-]+)+Z$", uuid + "Z", true),
        ("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", uuid, true),
    ])
    func knownAnswers(pattern: String, text: String, expected: Bool) {
        #expect(search(pattern, text) == expected, "\(text.debugDescription) ~ \(pattern.debugDescription)")
    }

    /// Patterns a backtracking matcher takes exponential time on: answered, and within the step budget.
    @Test func pathologicalPatternsAreAnswered() throws {
        let cases: [(String, String, Bool)] = [
            (#"^([0-9a-f-]+)+Z$"#, uuid, false),
            (#"^([0-9a-f-]+)+Z$"#, String(repeating: uuid, count: 50), false),
            ("(a*)*b", String(repeating: "a", count: 10_000), false),
            ("(a|aa)+$", String(repeating: "a", count: 5_000) + "b", false),
            ("(a|aa)+$", String(repeating: "a", count: 5_000), true),
            ("^(a+)+$", String(repeating: "a", count: 3_000) + "!", false),
            ("(x+x+)+y", String(repeating: "x", count: 3_000), false),
            ("^(([a-z])+.)+[A-Z]([a-z])+$", String(repeating: "a", count: 2_000) + "!", false),
        ]
        for (pattern, text, expected) in cases {
            let regex = try LinearRegex(pattern)
            #expect(regex.matches(text) == expected, "\(pattern) on \(text.count) characters")
        }
    }

    @Test func caseInsensitive() {
        #expect(search("^H", "hey", caseInsensitive: true) == true)
        #expect(search("^H", "hey") == false)
        #expect(search("ÉTÉ", "un été", caseInsensitive: true) == true)
        #expect(search("^[A-Z]+$", "abc", caseInsensitive: true) == true)
        #expect(search("^[a-z]+$", "ABC", caseInsensitive: true) == true)
        // Negation applies after case folding, as in PostgreSQL: `[^a]` matches neither `a` nor `A`.
        #expect(search("[^a]", "A", caseInsensitive: true) == false)
        #expect(search("[^a]", "b", caseInsensitive: true) == true)
        #expect(search("^[[:upper:]]+$", "abc", caseInsensitive: true) == true)
        #expect(search("σ", "Σ", caseInsensitive: true) == true)
        #expect(search("(?c)a", "A", caseInsensitive: true) == false)
        #expect(search("\\d", "D", caseInsensitive: true) == false)
        #expect(like("hey%", "HEY there", caseInsensitive: true) == true)
        #expect(like("ÉTÉ", "été", caseInsensitive: true) == true)
        #expect(like("ÉTÉ", "été") == false)
    }

    @Test func unicodeScalars() {
        // One character is one Unicode scalar, as PostgreSQL counts characters in UTF-8.
        #expect(search("^.$", "é") == true)
        #expect(search("^.$", "e\u{301}") == false)
        #expect(search("^..$", "e\u{301}") == true)
        #expect(search("^.$", "🎟") == true)
        #expect(search("^...$", "日本語") == true)
        #expect(search("^\\w+$", "Prénom") == true)
        #expect(search("^[[:alpha:]]+$", "Straße") == true)
        #expect(search("\\d", "٣") == false)  // digits are ASCII
        #expect(search("^[é-ë]$", "ê") == true)
        #expect(search("^[^é]$", "e") == true)
        #expect(search("\\u00e9", "é") == true)
        #expect(search("\\s", "\u{00A0}") == false)  // no-break space is not a space, as in glibc
        #expect(search("\\s", "\u{2028}") == true)
        #expect(like("_t_", "été") == true)
        #expect(like("%🎟%", "a🎟b") == true)
    }

    @Test func likePatterns() {
        let cases: [(String, String, Bool)] = [
            ("hey%", "hey there", true), ("hey%", "a hey", false), ("%there", "hey there", true), ("h_y", "hey", true), ("h_y", "heey", false),
            ("%", "", true), ("_", "", false), ("", "", true), ("", "a", false), ("100\\%", "100%", true), ("100\\%", "1000", false),
            ("a\\_c", "abc", false), ("a\\_c", "a_c", true), ("a\\\\c", "a\\c", true), ("\\a", "a", true), ("a.c", "abc", false),
            ("(x)|[y]", "(x)|[y]", true), ("^a$", "^a$", true), ("*the*", "hey there", true), ("%a%b%", "xxaxxbxx", true),
            ("%a%b%", "xxbxxaxx", false), ("line%", "line1\nline2", true), ("%%%_", "x", true), ("%_%_%", "x", false),
        ]
        for (pattern, text, expected) in cases {
            #expect(like(pattern, text) == expected, "\(text.debugDescription) like \(pattern.debugDescription)")
        }
        #expect(like(String(repeating: "%a", count: 20) + "%b", String(repeating: "a", count: 2_000)) == false)
        #expect(like("%" + String(repeating: "_", count: 100), String(repeating: "a", count: 2_000)) == true)
        #expect(throws: LinearRegex.SyntaxError.self) { try LinearRegex(likePattern: "ab\\") }
    }

    @Test func invalidPatternsAreRefused() {
        let cases: [(String, String)] = [
            ("(ab", "parentheses () not balanced"), ("ab)", "parentheses () not balanced"), ("[abc", "brackets [] not balanced"),
            ("a**", "quantifier operand invalid"), ("*a", "quantifier operand invalid"), ("a|+", "quantifier operand invalid"),
            ("^*", "quantifier operand invalid"), ("{2}", "quantifier operand invalid"), ("a{1}{2}", "quantifier operand invalid"),
            ("a{2,1}", "invalid repetition count(s)"), ("a{256}", "invalid repetition count(s)"), ("a{1", "braces {} not balanced"),
            ("[z-a]", "invalid character range"), ("[a-z-0]", "invalid character range"), ("[[:foo:]]", "invalid character class"),
            ("\\q", "invalid escape"), ("a\\", "invalid escape"), ("\\u12", "invalid escape"), ("[[.ab.]]", "invalid collating element"),
            ("a(?i)b", "embedded options"),
        ]
        for (pattern, reason) in cases {
            let error = refusal(pattern)
            #expect(error?.kind == .invalid, "\(pattern)")
            #expect(error?.reason.contains(reason) == true, "\(pattern): \(error?.reason ?? "accepted")")
        }
    }

    @Test func unsupportedPatternsAreRefused() {
        let cases: [(String, String)] = [
            ("(a)\\1", "back references"), ("[\\1]", "back references"), ("a(?=b)", "lookahead and lookbehind"),
            ("a(?!b)", "lookahead and lookbehind"), ("(?<=a)b", "lookahead and lookbehind"), ("(?<!a)b", "lookahead and lookbehind"),
            ("(?x)a b", "expanded syntax"), ("(?n)^a", "newline-sensitive"), ("(?b)a", "basic and extended"),
        ]
        for (pattern, reason) in cases {
            let error = refusal(pattern)
            #expect(error?.kind == .unsupported, "\(pattern)")
            #expect(error?.reason.contains(reason) == true, "\(pattern): \(error?.reason ?? "accepted")")
        }
    }

    @Test func sizeLimits() throws {
        #expect(refusal(String(repeating: "a", count: LinearRegex.maxPatternBytes)) == nil)
        #expect(refusal(String(repeating: "a", count: LinearRegex.maxPatternBytes + 1))?.kind == .tooLarge)
        #expect(refusal(String(repeating: "é", count: LinearRegex.maxPatternBytes / 2 + 1))?.kind == .tooLarge)  // bytes, not characters
        // Counted repetition is expanded when compiled, so nesting multiplies.
        #expect(refusal("(a{100}){100}")?.kind == .tooLarge)
        #expect(refusal("((a{255}){255}){255}")?.kind == .tooLarge)
        #expect(refusal("[0-9a-f]{255}x{255}y{255}z{255}")?.kind == .tooLarge)
        let fits = try LinearRegex("(a{30}){30}")
        #expect(fits.stateCount <= LinearRegex.maxStates)
        #expect(fits.matches(String(repeating: "a", count: 900)) == true)
        #expect(fits.matches(String(repeating: "a", count: 899)) == false)
        #expect(throws: LinearRegex.SyntaxError.self) { try LinearRegex(likePattern: String(repeating: "%", count: LinearRegex.maxPatternBytes + 1)) }
    }

    @Test func stepBudget() throws {
        let regex = try LinearRegex("^a+b")
        #expect(regex.matches(String(repeating: "a", count: 100), maxSteps: 10) == nil)
        #expect(regex.matches(String(repeating: "a", count: 100), maxSteps: 1_000) == false)
        #expect(regex.matches("ab", maxSteps: 20) == true)
        // A pattern near `maxStates` whose states all stay live: runs out long before a 10,000-character text ends.
        let wide = try LinearRegex("((.?){245}){2}\u{1}")
        #expect(wide.stateCount > LinearRegex.maxStates / 2)
        #expect(wide.matches(String(repeating: "x", count: 10_000)) == nil)
        #expect(wide.matches("x\u{1}") == true)
    }

    @Test func hostilePatternsNeverCrash() {
        let pieces = [
            "(", ")", "[", "]", "{", "}", "\\", "^", "$", "*", "+", "?", "|", ".", "a", "1", ",", "-", ":", "=", "#", "é", "(?", "[:", "\\u", "\\x",
        ]
        var seed: UInt64 = 0x2545_F491_4F6C_DD1D
        var compiled = 0
        for _ in 0..<5000 {
            var pattern = ""
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            for _ in 0..<Int(seed % 14) {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                pattern += pieces[Int(seed >> 33) % pieces.count]
            }
            for caseInsensitive in [false, true] {
                guard let regex = try? LinearRegex(pattern, caseInsensitive: caseInsensitive) else { continue }
                compiled += 1
                _ = regex.matches("a1é{}[]()\\" + pattern)
            }
            _ = (try? LinearRegex(likePattern: pattern))?.matches(pattern)
        }
        #expect(compiled > 100)
    }
}

// MARK: - Against PostgreSQL

/// The cluster `make test` starts, if any, and `psql` to reach it.
private let crossCheckDatabase: String? = {
    guard let url = ProcessInfo.processInfo.environment["MARQUEE_TEST_DATABASE_URL"], !url.isEmpty else { return nil }
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
    return path.contains { FileManager.default.isExecutableFile(atPath: "\($0)/psql") } ? url : nil
}()

@Suite struct LinearRegexPostgresTests {
    /// Random patterns of the supported syntax and random texts: `LinearRegex` answers as PostgreSQL's `~`, `~*`, `like`
    /// and `ilike` do, and refuses (as invalid) what PostgreSQL refuses.
    @Test(.enabled(if: crossCheckDatabase != nil, "needs MARQUEE_TEST_DATABASE_URL and psql"))
    func agreesWithPostgres() throws {
        let url = try #require(crossCheckDatabase)
        let atoms = [
            "a", "b", "A", "é", "É", "-", ".", "[a-c]", "[^ab]", "[[:alpha:]]", "[[:upper:]]", "[^[:lower:]]", "\\d", "\\w", "\\W", "\\s",
            "\\.", "1", " ", "[]a]", "[a-]", "[\\d-]", "^", "$", "\\y", "\\m", "\\M", "\\Y", "{", "}", "]", "\\n", "[\\w.]", "[é-ë]",
            "[A-C]", "[^A-Cé]", "\\x41", "\\u00e9", "Σ", "σ", "[α-ω]", "(", "(?:", ")", "|",
        ]
        let quantifiers = ["", "", "", "*", "+", "?", "{2}", "{0,2}", "{1,}", "*?", "{1,3}?"]
        let letters = ["a", "b", "A", "B", "é", "É", "-", " ", "1", "\n", ".", "c", "ë", "_", "Σ", "σ", "ω", "%"]
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random(_ n: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(seed >> 33) % n
        }
        var cases: [(op: String, pattern: String, text: String)] = []
        for _ in 0..<1500 {
            let op = ["~", "~", "~", "~*", "like", "ilike"][random(6)]
            var pattern = ""
            for _ in 0..<(1 + random(7)) {
                if op.hasSuffix("like") {
                    pattern += ["a", "b", "A", "%", "_", "\\%", "\\_", "é", "."][random(9)]
                } else {
                    pattern += atoms[random(atoms.count)] + quantifiers[random(quantifiers.count)]
                }
            }
            cases.append((op, pattern, (0..<random(10)).map { _ in letters[random(letters.count)] }.joined()))
        }
        func literal(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
        var script = """
            set standard_conforming_strings = on;
            create function pg_temp.try(t text, op text, p text) returns text language plpgsql as $$
            begin
              return case op when '~' then (t ~ p)::text when '~*' then (t ~* p)::text
                when 'like' then (t like p)::text else (t ilike p)::text end;
            exception when others then return 'error';
            end $$;
            select pg_temp.try(t, op, p) from (values

            """
        script += cases.enumerated().map { "(\($0.offset), \(literal($0.element.text)), \(literal($0.element.op)), \(literal($0.element.pattern)))" }
            .joined(separator: ",\n")
        script += "\n) as cases(id, t, op, p) order by id;\n"

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        var environment = ProcessInfo.processInfo.environment
        environment["PGCONNECT_TIMEOUT"] = "10"
        environment["PGOPTIONS"] = "-c statement_timeout=20000"
        process.environment = environment
        let (input, output) = (Pipe(), Pipe())
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(script.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "psql failed")
        let answers = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        try #require(answers.count == cases.count)

        var (agreed, refused) = (0, 0)
        for (item, answer) in zip(cases, answers) {
            let ours: String
            do {
                let caseInsensitive = item.op == "~*" || item.op == "ilike"
                let regex =
                    item.op.hasSuffix("like")
                    ? try LinearRegex(likePattern: item.pattern, caseInsensitive: caseInsensitive)
                    : try LinearRegex(item.pattern, caseInsensitive: caseInsensitive)
                ours = regex.matches(item.text).map { String($0) } ?? "out of steps"
            } catch  where error.kind == .invalid {
                ours = "error"
            } catch {
                refused += 1
                continue
            }
            #expect(ours == answer, "\(item.text.debugDescription) \(item.op) \(item.pattern.debugDescription)")
            if ours == answer { agreed += 1 }
        }
        #expect(agreed > cases.count * 9 / 10)
        #expect(refused < cases.count / 20)
    }
}
