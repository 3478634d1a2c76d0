// Cost of one filter-pattern evaluation, before (NSRegularExpression, as ChangeFilter used until issue 16) and after
// (LinearRegex). Not part of the package build; compile it together with MarqueeCore's sources:
//
//   swiftc -O -module-name benchcore $(find Sources/MarqueeCore -name '*.swift') bench/linear_regex/main.swift -o /tmp/linear_regex
//   /tmp/linear_regex after; /tmp/linear_regex before
//
// Times are CPU time of the process, so other work on a shared machine counts less. `before` measures only the first
// pattern: on the others NSRegularExpression takes minutes.
import Foundation

setvbuf(stdout, nil, _IOLBF, 0)
let uuid = "639f86b1-738b-43ed-bb09-c8d3f3bafa30"
func time(_ label: String, iterations: Int, _ body: () -> Bool?) {
    var result: Bool? = nil
    // CPU time of this process, so that other work on a shared machine counts less.
    func cpu() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) * 1e9 + Double(t.tv_nsec)
    }
    let start = cpu()
    for _ in 0..<iterations { result = body() }
    let ns = (cpu() - start) / Double(iterations)
    let text = ns >= 1e6 ? String(format: "%.1f ms", ns / 1e6) : String(format: "%.2f µs", ns / 1e3)
    print("\(label): \(text) CPU per evaluation (\(iterations) runs, result \(result.map(String.init) ?? "nil"))")
}
let patterns = [#"^([0-9a-f-]+)+Z$"#, "(a*)*b", "(a|aa)+$", "^[0-9a-f]{8}-[0-9a-f]{4}-"]
let mode = CommandLine.arguments.dropFirst().first ?? "after"
for pattern in patterns {
    let input = pattern.contains("a") && !pattern.contains("0-9") ? String(repeating: "a", count: 36) : uuid
    if mode == "before" {
        guard pattern == patterns[0] else { continue }
        let regex = try! NSRegularExpression(pattern: pattern, options: [])
        let iterations = pattern.hasPrefix("^([0-9a-f-]+)+Z") ? 3 : 50
        time("NSRegularExpression \(pattern) on \(input.count) chars", iterations: iterations) {
            regex.firstMatch(in: input, options: [], range: NSRange(location: 0, length: input.utf16.count)) != nil
        }
    } else {
        let regex = try! LinearRegex(pattern)
        time("LinearRegex \(pattern) on \(input.count) chars (\(regex.stateCount) states)", iterations: 100_000) { regex.matches(input) }
        let filter = try! ChangeFilter.parse("id=match.\(pattern)")
        let record: JSONObject = ["id": .string(input), "seat": 12]
        time("ChangeFilter.matches id=match.\(pattern)", iterations: 100_000) { filter.matches(record) }
    }
}
if mode == "after" {
    // Worst case the caps allow: a pattern of about maxStates states on a text that keeps every state live.
    let big = try! LinearRegex("((.?){245}){2}\u{1}")
    let long = String(repeating: "x", count: 10_000)
    time("LinearRegex ((.?){245}){2}\\x01 (\(big.stateCount) states) on 10,000 chars, budget \(LinearRegex.maxSteps) steps", iterations: 20) {
        big.matches(long)
    }
    let wide = try! LinearRegex(String(repeating: "a?", count: 100) + "b")
    time("LinearRegex a?×100 b (\(wide.stateCount) states) on 2,000 'a'", iterations: 20) { wide.matches(String(repeating: "a", count: 2_000)) }
}
