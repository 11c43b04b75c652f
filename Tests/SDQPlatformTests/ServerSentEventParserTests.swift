import Foundation
import SDQPlatform
import Testing

/// The event-stream reader against the WHATWG interpretation rules.
@Suite struct ServerSentEventParserTests {
    static func parse(_ pieces: [String]) -> ([ServerSentEventParser.Event], ServerSentEventParser) {
        var parser = ServerSentEventParser()
        var events: [ServerSentEventParser.Event] = []
        for piece in pieces { events += parser.feed(Array(piece.utf8)) }
        return (events, parser)
    }

    @Test func everyLineEndingAndPieceBoundaryReadsTheSame() {
        let text = "retry: 2000\n\n: keep-alive\n\nid: 1\nevent: queued\ndata: {\"a\":1}\n\ndata: one\ndata: two\n\n"
        let expected: [ServerSentEventParser.Event] = [
            .init(id: "1", event: "queued", data: #"{"a":1}"#), .init(id: "1", event: "message", data: "one\ntwo"),
        ]
        for ending in ["\n", "\r\n", "\r"] {
            let variant = text.replacingOccurrences(of: "\n", with: ending)
            #expect(Self.parse([variant]).0 == expected, "whole, ending \(Array(ending.utf8))")
            // Every split point, CRLF cut in half included.
            for cut in 1..<variant.utf8.count {
                let bytes = Array(variant.utf8)
                var parser = ServerSentEventParser()
                let events = parser.feed(bytes[..<cut]) + parser.feed(bytes[cut...])
                #expect(events == expected, "cut at \(cut), ending \(Array(ending.utf8))")
            }
        }
        let (_, parser) = Self.parse([text])
        #expect(parser.retry == 2000)
        #expect(parser.comments == 1)
        #expect(parser.lastEventID == "1")
    }

    @Test func fieldsFollowTheStandardsSmallRules() {
        let (events, parser) = Self.parse(["data:no space\n\n", "data:  two spaces\n\n", "event: lonely\n\n", "retry: soon\n\n", "id: 7\n\n", "data\n\n"])
        #expect(events.map(\.data) == ["no space", " two spaces", ""], "one space removed; a field without colon is empty")
        #expect(events.last?.id == "7", "an id without data is kept for the next event")
        #expect(parser.retry == nil, "a retry that is not digits is ignored")
        #expect(!events.contains { $0.event == "lonely" }, "no data, no event")
    }
}
