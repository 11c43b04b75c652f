import Foundation

/// Task identifiers: 26 characters of Crockford base32, time-ordered (48 bits of milliseconds,
/// then 80 random bits), so ids sort by submission time and need no coordination.
public enum TaskID {
    private static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")

    /// A new, unique task id.
    public static func generate(now: Int64 = EpochClock.nowMillis()) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 16)
        var time = UInt64(max(0, now))
        for index in stride(from: 5, through: 0, by: -1) {
            bytes[index] = UInt8(time & 0xff)
            time >>= 8
        }
        for index in 6..<16 { bytes[index] = generator.next() }
        return encode(bytes)
    }

    /// Whether `text` has the shape of a task id (used to reject junk in paths early).
    public static func isWellFormed(_ text: String) -> Bool {
        text.count == 26 && text.allSatisfy { alphabet.contains($0) }
    }

    private static func encode(_ bytes: [UInt8]) -> String {
        // 128 bits -> 26 base32 digits (the first digit carries 3 bits).
        var value = bytes.reduce(into: (hi: UInt64(0), lo: UInt64(0))) { acc, byte in
            acc.hi = (acc.hi << 8) | (acc.lo >> 56)
            acc.lo = (acc.lo << 8) | UInt64(byte)
        }
        var digits = [Character](repeating: "0", count: 26)
        for index in stride(from: 25, through: 0, by: -1) {
            digits[index] = alphabet[Int(value.lo & 31)]
            value.lo = (value.lo >> 5) | ((value.hi & 31) << 59)
            value.hi >>= 5
        }
        return String(digits)
    }
}
