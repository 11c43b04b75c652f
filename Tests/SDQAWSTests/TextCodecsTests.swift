import Foundation
import SDQAWS
import Testing

/// Timestamps, hex, percent-decoding and trimming without `DateFormatter`, `String(format:)` or
/// `CharacterSet`.
@Suite struct TextCodecsTests {
    @Test func compactTimestampsRoundTrip() throws {
        // 2013-05-24T00:00:00Z, the SigV4 documentation's example date.
        let date = Date(timeIntervalSince1970: 1_369_353_600)
        #expect(UTCTime.compactTimestamp(date) == "20130524T000000Z")
        #expect(UTCTime.date(compactTimestamp: "20130524T000000Z") == date)
        #expect(UTCTime.compactTimestamp(Date(timeIntervalSince1970: 951_782_399)) == "20000228T235959Z")
        #expect(UTCTime.compactTimestamp(Date(timeIntervalSince1970: 951_868_800)) == "20000301T000000Z")
        #expect(UTCTime.date(compactTimestamp: "2013-05-24T00:00:00Z") == nil)
        #expect(UTCTime.date(compactTimestamp: "20130524") == nil)
    }

    @Test func internetTimestampsWithAndWithoutFractions() throws {
        let date = Date(timeIntervalSince1970: 1_780_000_000.25)
        #expect(UTCTime.internetTimestamp(date) == "2026-05-28T20:26:40Z")
        #expect(UTCTime.internetTimestamp(date, fractional: true) == "2026-05-28T20:26:40.250Z")
        #expect(UTCTime.date(internetTimestamp: "2026-05-28T20:26:40Z") == Date(timeIntervalSince1970: 1_780_000_000))
        let fractional = try #require(UTCTime.date(internetTimestamp: "2026-05-28T20:26:40.250Z"))
        #expect(abs(fractional.timeIntervalSince1970 - 1_780_000_000.25) < 0.001)
        #expect(UTCTime.date(internetTimestamp: "yesterday") == nil)
    }

    /// Foundation's own ISO 8601 style is the oracle: the day arithmetic agrees with it across
    /// four centuries, leap days and times before 1970 included, and every output parses back.
    @Test func agreesWithFoundationAcrossCenturies() throws {
        let oracle = Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!)
        var generator = SystemRandomNumberGenerator()
        var samples: [Double] = [-2_208_988_800, -1, 0, 951_782_400, 951_868_799, 4_107_542_399, 13_569_465_599]
        for _ in 0..<2000 { samples.append(Double(Int64.random(in: -2_208_988_800...13_569_465_599, using: &generator))) }
        for seconds in samples {
            let date = Date(timeIntervalSince1970: seconds)
            let text = UTCTime.internetTimestamp(date)
            #expect(text == oracle.format(date), "at \(seconds)")
            #expect(UTCTime.date(internetTimestamp: text) == date, "parsing \(text)")
            #expect(UTCTime.date(compactTimestamp: UTCTime.compactTimestamp(date)) == date)
        }
    }

    @Test func parsesOffsetsAndRefusesImpossibleDates() {
        #expect(UTCTime.date(internetTimestamp: "2026-05-28T22:26:40+02:00") == Date(timeIntervalSince1970: 1_780_000_000))
        #expect(UTCTime.date(internetTimestamp: "2026-05-28T15:26:40-05:00") == Date(timeIntervalSince1970: 1_780_000_000))
        #expect(UTCTime.date(internetTimestamp: "2024-02-29T00:00:00Z") != nil)
        for bad in ["2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-05-28T24:00:00Z", "2026-05-28T20:26:40", "2026-05-28T20:26:40.Z",
            "2026-05-28T20:26:40Zjunk", "2026-05-28 20:26:40Z"]
        {
            #expect(UTCTime.date(internetTimestamp: bad) == nil, "accepted \(bad)")
        }
        #expect(UTCTime.date(compactTimestamp: "20230229T000000Z") == nil)
    }

    @Test func hexAndPercentEscapes() {
        #expect(Hex.lowercase([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Hex.lowercase([UInt8]()) == "")
        #expect(Hex.percentEscape(0x2f) == "%2F")
        #expect(URIEncoding.encode("a b/ü", keepSlash: true) == "a%20b/%C3%BC")
        #expect(URIEncoding.decode("a%20b%2Fc%C3%BC") == "a b/cü")
        // A stray percent sign or a short escape stays as written.
        #expect(URIEncoding.decode("100%") == "100%")
        #expect(URIEncoding.decode("50%zz%4") == "50%zz%4")
        // Escapes that are not UTF-8 leave the text as it was.
        #expect(URIEncoding.decode("%FF%FE") == "%FF%FE")
        #expect(URIEncoding.formEncode([("k y", "a+b c")]) == "k+y=a%2Bb+c")
    }

    @Test func trimsUnicodeWhitespaceAtBothEndsOnly() {
        #expect("  a b \t\n".trimmingWhitespace() == "a b")
        #expect("\u{00A0}\u{2003}key\u{3000}".trimmingWhitespace() == "key")
        #expect(" \t\r\n ".trimmingWhitespace() == "")
        #expect("".trimmingWhitespace() == "")
        #expect("e\u{301} ".trimmingWhitespace() == "e\u{301}")
        #expect("x, y".split(separator: ",").map { $0.trimmingWhitespace() } == ["x", "y"])
    }
}
