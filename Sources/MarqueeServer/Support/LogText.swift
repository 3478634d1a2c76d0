/// Client-supplied text made safe for a log line: control characters (C0, DEL, C1, and so ANSI escapes) and line or
/// paragraph separators are written as `\u{XX}` escapes, and the text is cut at `limit` characters, so a topic or a
/// reason can neither forge a line nor repaint a terminal.
public enum LogText {
    public static func escape(_ text: String, limit: Int = 200) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count >= limit {
                out += "…"
                break
            }
            count += 1
            let value = scalar.value
            if value < 0x20 || (0x7f...0x9f).contains(value) || value == 0x2028 || value == 0x2029 || value == 0x5c {
                out += value == 0x5c ? "\\\\" : "\\u{\(String(value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
