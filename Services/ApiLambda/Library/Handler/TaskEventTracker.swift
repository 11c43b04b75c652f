import Foundation
import SDQAWS
import SDQPlatform

/// One server-sent event (WHATWG `text/event-stream`).
public struct ServerSentEvent: Sendable, Equatable {
    public var id: String?
    public var event: String?
    public var data: String

    public init(id: String? = nil, event: String? = nil, data: String) {
        self.id = id
        self.event = event
        self.data = data
    }

    /// The event on the wire: `id:`, `event:`, one `data:` line per line of data, a blank line.
    public var encoded: Data {
        var text = ""
        if let id { text += "id: \(id)\n" }
        if let event { text += "event: \(event)\n" }
        for line in data.split(separator: "\n", omittingEmptySubsequences: false) { text += "data: \(line)\n" }
        return Data((text + "\n").utf8)
    }

    /// A comment line (heartbeats): ignored by clients, keeps proxies from closing the stream.
    public static func comment(_ text: String) -> Data { Data(": \(text)\n\n".utf8) }
}

/// Where a client stands in a task's event stream, as its event ids carry it: the stage of the
/// last state event it saw, the progress (per mille) and the newest preview (epoch ms). An id is
/// `stage.permille.preview` with a queue-position suffix (`.qN`) that only makes ids of repeated
/// queue events distinct. A client that reconnects with `Last-Event-ID` gets only what is newer.
public struct EventCursor: Sendable, Equatable {
    /// -1: nothing seen; 0 queued, 1 dispatched, 2 running, 3 ended.
    public var stage: Int
    public var permille: Int
    public var preview: Int64
    /// The place in line the last queue event gave.
    public var queuePosition: Int?

    public static let start = EventCursor(stage: -1, permille: -1, preview: 0)

    public init(stage: Int, permille: Int, preview: Int64, queuePosition: Int? = nil) {
        self.stage = stage
        self.permille = permille
        self.preview = preview
        self.queuePosition = queuePosition
    }

    /// The cursor of a `Last-Event-ID`; nil when it is not an id of this stream.
    public init?(lastEventID: String) {
        let parts = lastEventID.trimmingWhitespace().split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 || parts.count == 4, let stage = Int(parts[0]), (-1...3).contains(stage), let permille = Int(parts[1]),
            (-1...1000).contains(permille), let preview = Int64(parts[2]), preview >= 0
        else { return nil }
        let position = parts.count == 4 && parts[3].hasPrefix("q") ? Int(parts[3].dropFirst()) : nil
        self.init(stage: stage, permille: permille, preview: preview, queuePosition: position)
    }

    func id(queuePosition: Int? = nil) -> String {
        "\(stage).\(permille).\(preview)" + (queuePosition.map { ".q\($0)" } ?? "")
    }

    static func stage(of status: TaskStatus) -> Int {
        switch status {
        case .queued: 0
        case .dispatched: 1
        case .running: 2
        case .succeeded, .failed, .cancelled: 3
        }
    }
}

/// What the stream knows of a task besides its record when it looks at it.
public struct TaskObservation: Sendable {
    public var record: TaskRecord
    /// Approximate place in line while it waits.
    public var queuePosition: Int?
    /// Seconds a task of its pool recently took, when known (the ETA before it starts).
    public var typicalSeconds: Double?
    /// Now, epoch milliseconds.
    public var now: Int64
    /// The URL of the newest preview, when there is one.
    public var previewURL: String?

    public init(record: TaskRecord, queuePosition: Int? = nil, typicalSeconds: Double? = nil, now: Int64, previewURL: String? = nil) {
        self.record = record
        self.queuePosition = queuePosition
        self.typicalSeconds = typicalSeconds
        self.now = now
        self.previewURL = previewURL
    }
}

/// Turns successive observations of one task into the events a client has not seen yet: a state
/// event when the task moves on (`queued` again when its place in line changes), `progress` when it
/// advanced, `preview` when a newer one exists, and the terminal event (`succeeded`, `failed`,
/// `cancelled`, whose data is the full status document) last. A pure value: the stream feeds it.
public struct TaskEventTracker: Sendable {
    public private(set) var cursor: EventCursor
    private var lastQueuePosition: Int?
    /// The task's total steps (`steps` of its parameters), when it has them.
    private var steps: Int?

    /// The id that resumes after everything sent so far (the `reconnect` event's).
    public var resumeID: String { cursor.id(queuePosition: cursor.stage <= 1 ? lastQueuePosition : nil) }

    public init(resumingAfter lastEventID: String? = nil) {
        cursor = lastEventID.flatMap(EventCursor.init(lastEventID:)) ?? .start
        lastQueuePosition = cursor.queuePosition
    }

    /// The events that `observation` gives a client that has seen up to ``cursor``; `document`
    /// renders the full status document (terminal events only).
    public mutating func events(for observation: TaskObservation, document: () -> String) -> [ServerSentEvent] {
        let record = observation.record
        if steps == nil { steps = Self.steps(of: record) }
        let stage = EventCursor.stage(of: record.status)
        var events: [ServerSentEvent] = []
        if stage == 3 {
            if cursor.stage < 3 {
                cursor = EventCursor(stage: 3, permille: 1000, preview: max(cursor.preview, record.previewAt ?? 0))
                events.append(ServerSentEvent(id: cursor.id(), event: record.status.rawValue, data: document()))
            }
            return events
        }
        let position = stage <= 1 ? observation.queuePosition : nil
        if stage > cursor.stage || (stage <= 1 && position != nil && position != lastQueuePosition) {
            cursor.stage = max(cursor.stage, stage)
            if stage > 2 || cursor.stage > stage { return events }
            lastQueuePosition = position
            var data: [String: JSONValue] = ["id": .string(record.id), "status": .string(record.status.rawValue), "pool": .string(record.pool)]
            if let position { data["queue_position"] = .number(Double(position)) }
            if let worker = record.worker, stage == 2 { data["worker"] = .string(worker) }
            if let eta = eta(observation) { data["eta_seconds"] = .number(eta) }
            events.append(ServerSentEvent(id: cursor.id(queuePosition: position), event: record.status.rawValue, data: Self.text(data)))
        }
        let permille = Int((min(1, max(0, record.progress)) * 1000).rounded(.down))
        if stage == 2, permille > max(cursor.permille, 0) {
            cursor.permille = permille
            var data: [String: JSONValue] = ["id": .string(record.id), "fraction": .number(Double(permille) / 1000)]
            if let steps {
                data["steps"] = .number(Double(steps))
                data["step"] = .number((Double(steps) * record.progress).rounded(.down))
            }
            if let eta = eta(observation) { data["eta_seconds"] = .number(eta) }
            events.append(ServerSentEvent(id: cursor.id(), event: "progress", data: Self.text(data)))
        }
        if let at = record.previewAt, at > cursor.preview, let url = observation.previewURL {
            cursor.preview = at
            let data: [String: JSONValue] = ["id": .string(record.id), "url": .string(url), "at": .number(Double(at))]
            events.append(ServerSentEvent(id: cursor.id(), event: "preview", data: Self.text(data)))
        }
        return events
    }

    /// Seconds until the task is likely done: from its own step rate once it runs (after 2 % of
    /// it), before that from the pool's recent durations (times its place in line while it waits).
    func eta(_ observation: TaskObservation) -> Double? {
        let record = observation.record
        if record.status == .running, record.progress >= 0.02, let started = record.timings.runtimeStartedAt ?? record.timings.startedAt {
            let elapsed = Double(max(0, observation.now - started)) / 1000
            return Self.rounded(elapsed / record.progress * (1 - record.progress))
        }
        guard let typical = observation.typicalSeconds else { return nil }
        switch record.status {
        case .running: return Self.rounded(typical * (1 - record.progress))
        case .queued, .dispatched: return Self.rounded(typical * Double(observation.queuePosition ?? 1))
        default: return nil
        }
    }

    static func rounded(_ seconds: Double) -> Double { (seconds * 10).rounded() / 10 }

    static func steps(of record: TaskRecord) -> Int? {
        guard let text = record.parameters, let parameters = try? JSONValue.parse(Data(text.utf8), maxDepth: .max),
            let steps = parameters["steps"]?.numberValue, steps >= 1
        else { return nil }
        return Int(steps)
    }

    static func text(_ object: [String: JSONValue]) -> String {
        String(decoding: JSONValue.object(object).serialized(), as: UTF8.self)
    }
}
