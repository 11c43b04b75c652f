#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// UTC timestamps in the forms AWS and sdq write, computed from the Unix time with the proleptic
/// Gregorian calendar's day arithmetic. Neither a `DateFormatter` nor `Date.ISO8601FormatStyle`:
/// both consult the current time zone, which with Foundation linked loads ICU's time-zone and
/// locale data (megabytes of a Lambda function's memory) on first use.
public enum UTCTime {
    /// Civil date and time of `date` in UTC.
    struct Fields: Equatable {
        var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, millisecond: Int
    }

    static func fields(_ date: Date) -> Fields {
        let totalMilliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let (days, millisOfDay) = totalMilliseconds.quotientAndRemainder(dividingBy: 86_400_000)
        var day = days
        var millis = millisOfDay
        if millis < 0 {
            millis += 86_400_000
            day -= 1
        }
        // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil inverse).
        let shifted = day + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let civilDay = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let seconds = millis / 1000
        return Fields(
            year: Int(year), month: Int(month), day: Int(civilDay), hour: Int(seconds / 3600), minute: Int(seconds / 60 % 60),
            second: Int(seconds % 60), millisecond: Int(millis % 1000))
    }

    /// Seconds since 1970 of a civil UTC date and time; nil when a field is out of range.
    static func seconds(_ f: Fields) -> Int64? {
        guard (1...12).contains(f.month), f.hour < 24, f.minute < 60, f.second < 61, f.hour >= 0, f.minute >= 0, f.second >= 0
        else { return nil }
        let leap = f.year % 4 == 0 && (f.year % 100 != 0 || f.year % 400 == 0)
        let lengths = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...lengths[f.month - 1]).contains(f.day) else { return nil }
        let y = Int64(f.month <= 2 ? f.year - 1 : f.year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(f.month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(f.day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return days * 86_400 + Int64(f.hour * 3600 + f.minute * 60 + f.second)
    }

    private static func digits(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    /// `YYYYMMDD'T'HHMMSS'Z'` (SigV4's `X-Amz-Date`).
    public static func compactTimestamp(_ date: Date) -> String {
        let f = fields(date)
        return digits(f.year, 4) + digits(f.month, 2) + digits(f.day, 2) + "T" + digits(f.hour, 2) + digits(f.minute, 2)
            + digits(f.second, 2) + "Z"
    }

    /// Parses `YYYYMMDD'T'HHMMSS'Z'`.
    public static func date(compactTimestamp text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z"),
            let year = number(bytes[0..<4]), let month = number(bytes[4..<6]), let day = number(bytes[6..<8]),
            let hour = number(bytes[9..<11]), let minute = number(bytes[11..<13]), let second = number(bytes[13..<15]),
            let seconds = seconds(Fields(year: year, month: month, day: day, hour: hour, minute: minute, second: second, millisecond: 0))
        else { return nil }
        return Date(timeIntervalSince1970: Double(seconds))
    }

    /// `YYYY-MM-DD'T'HH:MM:SS'Z'`, or with milliseconds (`.sss`) when `fractional`.
    public static func internetTimestamp(_ date: Date, fractional: Bool = false) -> String {
        let f = fields(date)
        var text = digits(f.year, 4) + "-" + digits(f.month, 2) + "-" + digits(f.day, 2) + "T" + digits(f.hour, 2) + ":"
            + digits(f.minute, 2) + ":" + digits(f.second, 2)
        if fractional { text += "." + digits(f.millisecond, 3) }
        return text + "Z"
    }

    /// Parses an RFC 3339 timestamp in UTC (`Z`) or with a numeric offset, with or without
    /// fractional seconds.
    public static func date(internetTimestamp text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"), bytes[13] == UInt8(ascii: ":"),
            bytes[16] == UInt8(ascii: ":"),
            let year = number(bytes[0..<4]), let month = number(bytes[5..<7]), let day = number(bytes[8..<10]),
            let hour = number(bytes[11..<13]), let minute = number(bytes[14..<16]), let second = number(bytes[17..<19]),
            let base = seconds(Fields(year: year, month: month, day: day, hour: hour, minute: minute, second: second, millisecond: 0))
        else { return nil }
        var index = 19
        var fraction = 0.0
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, let digit = number(bytes[index..<(index + 1)]) {
                fraction += Double(digit) * scale
                scale /= 10
                index += 1
            }
            guard index > start, index < bytes.count else { return nil }
        }
        var offset: Int64 = 0
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard index + 1 == bytes.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == bytes.count, bytes[index + 3] == UInt8(ascii: ":"),
                let hours = number(bytes[(index + 1)..<(index + 3)]), let minutes = number(bytes[(index + 4)..<(index + 6)]),
                hours < 24, minutes < 60
            else { return nil }
            offset = Int64(hours * 3600 + minutes * 60) * (bytes[index] == UInt8(ascii: "+") ? 1 : -1)
        default:
            return nil
        }
        return Date(timeIntervalSince1970: Double(base - offset) + fraction)
    }

    /// The decimal value of ASCII digits; nil when any byte is not a digit.
    private static func number(_ bytes: ArraySlice<UInt8>) -> Int? {
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return bytes.isEmpty ? nil : value
    }
}

/// Hexadecimal text of bytes.
public enum Hex {
    private static let lower = Array("0123456789abcdef".utf8)
    private static let upper = Array("0123456789ABCDEF".utf8)

    /// Lower-case hex of `bytes` (digests, signatures).
    public static func lowercase<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(lower[Int(byte >> 4)])
            out.append(lower[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `%XX` with upper-case digits, the percent-escape of one byte.
    public static func percentEscape(_ byte: UInt8) -> String {
        String(decoding: [UInt8(ascii: "%"), upper[Int(byte >> 4)], upper[Int(byte & 0x0f)]], as: UTF8.self)
    }

    /// The value of one hex digit, nil for any other byte.
    public static func value(of digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension StringProtocol {
    /// The text without Unicode white space (spaces, tabs, newlines…) at either end: the standard
    /// library's scalar properties rather than Foundation's `CharacterSet`, which with
    /// Foundation linked goes through CoreFoundation's character-set tables.
    public func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}
