/// The JSON number `to_jsonb` gives a `real` or `double precision`: the float's shortest text read as `numeric` and
/// printed again, so without exponent and with as many decimals as significant digits need (`1e+100` is a 1 and 100
/// zeros, `1.5e-07` is `0.00000015`, `-0` is `0`). `NaN`, `Infinity` and `-Infinity` are not numbers: nil.
enum PgNumberText {
    static func decimal(fromFloatText text: String) -> String? {
        var utf8 = Substring(text).utf8[...]
        var negative = false
        if utf8.first == UInt8(ascii: "-") {
            negative = true
            utf8 = utf8.dropFirst()
        } else if utf8.first == UInt8(ascii: "+") {
            utf8 = utf8.dropFirst()
        }
        var digits: [UInt8] = []
        var pointPosition: Int?
        var exponent = 0
        var index = utf8.startIndex
        while index < utf8.endIndex {
            let byte = utf8[index]
            if isDigit(byte) {
                digits.append(byte)
            } else if byte == UInt8(ascii: "."), pointPosition == nil {
                pointPosition = digits.count
            } else if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                guard let value = Int(Substring(utf8[utf8.index(after: index)...])), abs(value) < 10_000 else { return nil }
                exponent = value
                break
            } else {
                return nil
            }
            index = utf8.index(after: index)
        }
        guard !digits.isEmpty else { return nil }
        // position of the decimal point within `digits`, after the exponent
        var point = (pointPosition ?? digits.count) + exponent
        while let first = digits.first, first == UInt8(ascii: "0"), digits.count > 1 {
            digits.removeFirst()
            point -= 1
        }
        while let last = digits.last, last == UInt8(ascii: "0"), digits.count > 1, digits.count > point {
            digits.removeLast()
        }
        if digits == [UInt8(ascii: "0")] { return "0" }
        var out: [UInt8] = negative ? [UInt8(ascii: "-")] : []
        if point <= 0 {
            out += Array("0.".utf8) + Array(repeating: UInt8(ascii: "0"), count: -point) + digits
        } else if point >= digits.count {
            out += digits + Array(repeating: UInt8(ascii: "0"), count: point - digits.count)
        } else {
            out += digits[..<point] + [UInt8(ascii: ".")] + digits[point...]
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}
