import Foundation
import Metrics
import SDQAWS
import SDQPlatform
import Synchronization

/// How event streams and waits pace themselves.
public struct EventStreamTiming: Sendable {
    /// A comment line this often keeps idle connections (and proxies) open.
    public var heartbeat: Duration = .seconds(15)
    /// The longest a stream or wait goes without reading the record again: a change made in this
    /// process wakes it at once (embedded); otherwise (AWS, another process) this is its read rate.
    public var pollInterval: Duration = .seconds(1)
    /// Kept back from the front door's limit (``APIRequest/answerWithin``) to end a stream with
    /// its `reconnect` event, or to answer a wait, before the front door cuts the answer off.
    public var margin: Duration = .seconds(2)
    /// The longest `Prefer: wait` honoured where the front door sets no limit.
    public var maxWait: Duration = .seconds(60)

    public init() {}
}

/// Counts the event streams open now (the `sdq_api_event_streams` gauge), and ends them all when
/// the server shuts down (``closeAll()``): each sends its `reconnect` event within a poll
/// interval, so a rolling deploy hands its clients over instead of waiting for their tasks.
public final class OpenStreams: Sendable {
    private let count = Mutex(0)
    private let closing = Mutex(false)
    private let gauge = Gauge(label: "sdq_api_event_streams")
    public init() {}
    public var current: Int { count.withLock { $0 } }
    /// Whether the server is shutting down: streams and waits end now.
    public var isClosing: Bool { closing.withLock { $0 } }
    /// Ends every stream (with `reconnect`) and every `Prefer: wait` (with the current document).
    public func closeAll() { closing.withLock { $0 = true } }
    func opened() { gauge.record(count.withLock { $0 += 1; return $0 }) }
    func closed() { gauge.record(count.withLock { $0 -= 1; return $0 }) }
}

/// How long the tasks of each pool recently took on their runtime (an exponentially weighted
/// mean of the tasks this API instance saw end), for the ETA of a task that has not started.
public final class PoolDurations: Sendable {
    private let means = Mutex([String: Double]())
    public init() {}

    /// Takes the duration of a task that succeeded into its pool's mean.
    func record(_ record: TaskRecord) {
        guard record.status == .succeeded, let start = record.timings.runtimeStartedAt ?? record.timings.startedAt,
            let end = record.timings.runtimeFinishedAt ?? record.timings.finishedAt, end > start
        else { return }
        let seconds = Double(end - start) / 1000
        means.withLock { $0[record.pool] = $0[record.pool].map { 0.7 * $0 + 0.3 * seconds } ?? seconds }
    }

    /// The pool's recent mean, seconds; nil before any of its tasks was seen to end.
    func typical(pool: String) -> Double? { means.withLock { $0[pool] } }
}

extension APIHandler {
    // MARK: Event stream

    /// `GET /v1/tasks/{id}/events`: the task's server-sent events (see ``TaskEventTracker``).
    /// A missing or foreign task is a 404 before anything streams; a client that already saw the
    /// end (`Last-Event-ID` of the terminal event) gets 204, which tells `EventSource` to stop.
    func events(_ id: String, request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        let record = try await visibleTask(id, tenant: tenant)
        let lastEventID = request.headers["last-event-id"] ?? request.query["last_event_id"]
        if record.status.isTerminal, let seen = lastEventID.flatMap(EventCursor.init(lastEventID:)), seen.stage == 3 {
            return APIResponse(status: 204, headers: ["cache-control": "no-store"])
        }
        let deadline = request.answerWithin.map { ContinuousClock.now + max(.zero, $0 - eventTiming.margin) }
        let stream = ResponseStream { send in
            try await self.streamEvents(of: record, request: request, lastEventID: lastEventID, deadline: deadline, send: send)
        }
        return APIResponse(
            status: 200,
            headers: ["content-type": "text/event-stream", "cache-control": "no-store", "x-accel-buffering": "no"],
            stream: stream)
    }

    /// The stream's loop: look at the task, send what is new, wait for a change (or the next
    /// read), until the task ends, the client goes (a send throws), or the deadline comes.
    private func streamEvents(
        of first: TaskRecord, request: APIRequest, lastEventID: String?, deadline: ContinuousClock.Instant?,
        send: (Data) async throws -> Void
    ) async throws {
        openStreams.opened()
        defer { openStreams.closed() }
        let store = context.transport.tasks
        let id = first.id
        var tracker = TaskEventTracker(resumingAfter: lastEventID)
        // Buffered front doors answer only when the stream ends: end at the first news, and have
        // the client come back soon.
        try await send(Data("retry: \(request.streamsResponses ? 2000 : 500)\n\n".utf8))
        var record = first
        var generation = await store.changeGeneration(of: id)
        var lastSent = ContinuousClock.now
        while true {
            let document = record.status.isTerminal ? await terminalDocument(record, request: request) : ""
            let events = tracker.events(for: await observe(record, request: request)) { document }
            for event in events { try await send(event.encoded) }
            if !events.isEmpty { lastSent = .now }
            if record.status.isTerminal { return }
            let ending = openStreams.isClosing || deadline.map { ContinuousClock.now >= $0 } ?? false
            if ending || (deadline != nil && !request.streamsResponses && !events.isEmpty) {
                let data = TaskEventTracker.text(["id": .string(id), "last_event_id": .string(tracker.resumeID)])
                try await send(ServerSentEvent(id: tracker.resumeID, event: "reconnect", data: data).encoded)
                return
            }
            var wait = eventTiming.pollInterval
            if let deadline { wait = min(wait, max(.milliseconds(1), deadline - .now)) }
            await store.waitForChange(of: id, since: generation, timeout: wait)
            try Task.checkCancellation()
            if ContinuousClock.now - lastSent >= eventTiming.heartbeat {
                try await send(ServerSentEvent.comment("keep-alive"))
                lastSent = .now
            }
            generation = await store.changeGeneration(of: id)
            // A store outage keeps the stream on the record it has; a purged task ends it.
            do {
                guard let current = try await store.get(id: id) else { return }
                record = current
            } catch {
                continue
            }
        }
    }

    private func observe(_ record: TaskRecord, request: APIRequest) async -> TaskObservation {
        poolDurations.record(record)
        var previewURL: String?
        if let key = record.previewKey, !record.status.isTerminal { previewURL = await url(forKey: key, request: request) }
        return TaskObservation(
            record: record, queuePosition: await queuePosition(of: record), typicalSeconds: poolDurations.typical(pool: record.pool),
            now: EpochClock.nowMillis(), previewURL: previewURL)
    }

    private func terminalDocument(_ record: TaskRecord, request: APIRequest) async -> String {
        var document = await document(record, request: request)
        document.eventsURL = nil
        return (try? document.encoded()).map { String(decoding: $0, as: UTF8.self) } ?? #"{"id":"\#(record.id)"}"#
    }

    /// The URL of a task's event stream, with a stream token when the API needs a key.
    func eventsURL(of record: TaskRecord, request: APIRequest) -> String {
        var url = baseURL(request) + "/v1/tasks/\(record.id)/events"
        if !keyring.isOpen, let streamTokens {
            url += "?token=" + streamTokens.issue(tenant: record.tenant ?? Tenant.anonymous.name, taskID: record.id, now: EpochClock.nowMillis())
        }
        return url
    }

    /// The tenant of a stream token presented on an event stream's URL (instead of a key), when
    /// the token is valid for that task and its tenant still holds a key.
    func streamTenant(_ request: APIRequest) -> Tenant? {
        guard let token = request.query["token"], let streamTokens else { return nil }
        let segments = request.path.split(separator: "/").map(String.init)
        guard segments.count == 4, segments[0] == "v1", segments[1] == "tasks", segments[3] == "events",
            let name = streamTokens.verify(token, taskID: segments[2], now: EpochClock.nowMillis())
        else { return nil }
        return keyring.entries.first { $0.tenant.name == name }?.tenant
    }

    // MARK: Prefer: wait

    /// The seconds of a `Prefer: wait=N` (RFC 7240), when asked.
    static func preferredWait(_ request: APIRequest) -> Int? {
        guard let prefer = request.headers["prefer"] else { return nil }
        for preference in prefer.split(separator: ",") {
            let token = preference.split(separator: ";").first.map { $0.trimmingWhitespace() } ?? ""
            let parts = token.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace() }
            if parts.count == 2, parts[0].lowercased() == "wait" {
                return Int(parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))).map { max(0, $0) }
            }
        }
        return nil
    }

    /// How long a `Prefer: wait` may hold this request: what the client asked, capped by
    /// ``EventStreamTiming/maxWait`` and by the front door's limit less the margin.
    func waitBudget(_ request: APIRequest) -> (Duration, seconds: Int)? {
        guard let asked = Self.preferredWait(request) else { return nil }
        var cap = eventTiming.maxWait
        if let limit = request.answerWithin { cap = min(cap, max(.zero, limit - eventTiming.margin)) }
        let seconds = min(asked, Int(cap.components.seconds))
        return (.seconds(seconds), seconds)
    }

    /// Waits up to `budget` for task `record` to end; returns the newest record seen.
    func awaitEnd(of record: TaskRecord, within budget: Duration) async -> TaskRecord {
        let store = context.transport.tasks
        let deadline = ContinuousClock.now + budget
        var record = record
        while !record.status.isTerminal, ContinuousClock.now < deadline, !Task.isCancelled, !openStreams.isClosing {
            let generation = await store.changeGeneration(of: record.id)
            if let current = try? await store.get(id: record.id) {
                record = current
                if record.status.isTerminal { break }
            }
            await store.waitForChange(of: record.id, since: generation, timeout: min(eventTiming.pollInterval, deadline - .now))
        }
        return record
    }

    // MARK: Lists

    /// `GET /v1/tasks?status=&pool=&since=&until=&limit=&cursor=`: the tenant's tasks, newest first.
    func listTasks(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        try Self.refuseUnknownParameters(request, known: ["status", "pool", "since", "until", "limit", "cursor"], of: "the list")
        var query = TaskListQuery(tenant: tenant.name)
        if let text = request.query["status"] {
            guard let status = TaskStatus(rawValue: text) else {
                throw .invalid("status", "status must be one of \(TaskStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            query.status = status
        }
        if let pool = request.query["pool"] {
            guard context.pools.pool(named: pool) != nil else { throw .unknownPool(pool) }
            query.pool = pool
        }
        query.since = try Self.time(request.query["since"], field: "since")
        query.until = try Self.time(request.query["until"], field: "until")
        if let text = request.query["limit"] {
            guard let limit = Int(text), (1...100).contains(limit) else { throw .invalid("limit", "limit must be an integer from 1 to 100") }
            query.limit = limit
        }
        if let cursor = request.query["cursor"] {
            guard let position = TaskListPosition(cursor: cursor) else { throw .invalid("cursor", "cursor is not one this API returned") }
            query.after = position
        }
        let page: TaskPage
        do { page = try await context.transport.tasks.list(query) } catch { throw .unavailable("\(error)") }
        var items: [JSONValue] = []
        for record in page.records {
            guard let value = try? await document(record, request: request, withEventsURL: false).jsonValue() else { continue }
            items.append(value)
        }
        var body: [String: JSONValue] = ["tasks": .array(items), "next_cursor": page.next.map { .string($0.cursor) } ?? .null]
        if let next = page.next {
            var parameters = request.query
            parameters["cursor"] = next.cursor
            var components = URLComponents()
            components.queryItems = parameters.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
            body["next"] = .string("/v1/tasks?" + (components.percentEncodedQuery ?? ""))
        }
        return .json(200, JSONValue.object(body).serialized())
    }

    /// A 400 naming the first query parameter that is not in `known` (`what` names the route).
    static func refuseUnknownParameters(_ request: APIRequest, known: Set<String>, of what: String) throws(APIError) {
        if let unknown = request.query.keys.sorted().first(where: { !known.contains($0) }) {
            throw .invalid(unknown, "unknown parameter \(unknown); \(what) takes \(known.sorted().joined(separator: ", "))")
        }
    }

    /// A time parameter: epoch milliseconds, or an RFC 3339 / ISO 8601 date-time.
    /// Either way it lies between 1970 and the end of the year 9999.
    static func time(_ text: String?, field: String) throws(APIError) -> Int64? {
        guard let text else { return nil }
        let latest: Int64 = 253_402_300_799_999
        let problem = "\(field) must be epoch milliseconds (0 to \(latest)) or an RFC 3339 date-time"
        if let millis = Int64(text) {
            guard (0...latest).contains(millis) else { throw .invalid(field, problem) }
            return millis
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text) {
            let millis = (date.timeIntervalSince1970 * 1000).rounded()
            if millis >= 0, millis <= Double(latest) { return Int64(millis) }
        }
        throw .invalid(field, problem)
    }
}
