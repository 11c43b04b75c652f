import Foundation

/// Reads a `text/event-stream` as the WHATWG HTML standard's event-stream interpretation does:
/// lines ending in LF, CRLF or CR, `field: value` (one optional space after the colon), comments
/// starting with `:`, an event dispatched at a blank line when it has data, `id` kept for
/// `Last-Event-ID` even across events, `retry` as the reconnection delay. Fed with the stream's
/// pieces as they arrive (a piece may end mid-line or mid-character).
public struct ServerSentEventParser: Sendable {
    /// One dispatched event.
    public struct Event: Sendable, Equatable {
        /// The last event id seen up to this event (what a client resumes with).
        public var id: String?
        /// `message` unless the event named itself.
        public var event: String
        public var data: String

        public init(id: String?, event: String, data: String) {
            self.id = id
            self.event = event
            self.data = data
        }

        /// The data as JSON, when it is JSON.
        public var json: JSONValue? { try? JSONValue.parse(Data(data.utf8)) }
    }

    /// The id the next reconnection sends as `Last-Event-ID`.
    public private(set) var lastEventID: String?
    /// The server's `retry` field, milliseconds.
    public private(set) var retry: Int?
    /// Comment lines seen (heartbeats).
    public private(set) var comments = 0
    private var pending: [UInt8] = []
    /// The last piece ended in CR: an LF starting the next one belongs to it.
    private var afterCR = false
    private var name: String?
    private var data: [String] = []

    public init() {}

    /// Takes the next piece of the stream; returns the events it completed.
    public mutating func feed(_ piece: some Sequence<UInt8>) -> [Event] {
        var events: [Event] = []
        for byte in piece {
            if afterCR {
                afterCR = false
                if byte == 0x0A { continue }
            }
            guard byte == 0x0A || byte == 0x0D else {
                pending.append(byte)
                continue
            }
            afterCR = byte == 0x0D
            if let event = take(String(decoding: pending, as: UTF8.self)) { events.append(event) }
            pending.removeAll(keepingCapacity: true)
        }
        return events
    }

    private mutating func take(_ line: String) -> Event? {
        if line.isEmpty {
            defer {
                name = nil
                data = []
            }
            guard !data.isEmpty else { return nil }
            return Event(id: lastEventID, event: name ?? "message", data: data.joined(separator: "\n"))
        }
        if line.hasPrefix(":") {
            comments += 1
            return nil
        }
        let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        var value = parts.count > 1 ? String(parts[1]) : ""
        if value.hasPrefix(" ") { value.removeFirst() }
        switch parts[0] {
        case "id" where !value.contains("\u{0}"): lastEventID = value
        case "event": name = value
        case "data": data.append(value)
        case "retry" where !value.isEmpty && value.allSatisfy(\.isASCII) && value.allSatisfy(\.isNumber): retry = Int(value)
        default: break
        }
        return nil
    }
}
