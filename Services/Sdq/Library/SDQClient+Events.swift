import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDQPlatform

/// What a client knows of a task as it moves: from its event stream, or from a polled status.
public struct TaskUpdate: Sendable, Equatable {
    public var id: String
    public var status: TaskStatus
    /// Place in line while it waits.
    public var queuePosition: Int?
    public var step: Int?
    public var steps: Int?
    /// 0…1.
    public var fraction: Double = 0
    /// Seconds until it is likely done, as the API estimates.
    public var etaSeconds: Double?
    /// The newest live preview's URL.
    public var previewURL: String?

    public init(id: String, status: TaskStatus) {
        self.id = id
        self.status = status
    }

    /// What a status document says (polling).
    public init(document: TaskDocument) {
        self.init(id: document.id, status: document.status)
        queuePosition = document.queuePosition
        fraction = document.progress.isFinite ? min(1, max(0, document.progress)) : 0
        previewURL = document.preview?.url
    }

    /// Takes in one event of the task's stream (not the terminal one).
    mutating func apply(_ event: ServerSentEventParser.Event) {
        guard let data = event.json else { return }
        switch event.event {
        case "queued", "dispatched", "running":
            if let status = TaskStatus(rawValue: event.event) { self.status = status }
            queuePosition = data["queue_position"]?.numberValue.map { Int($0) }
            etaSeconds = data["eta_seconds"]?.numberValue
        case "progress":
            status = .running
            queuePosition = nil
            fraction = data["fraction"]?.numberValue ?? fraction
            step = data["step"]?.numberValue.map { Int($0) }
            steps = data["steps"]?.numberValue.map { Int($0) }
            etaSeconds = data["eta_seconds"]?.numberValue
        case "preview":
            previewURL = data["url"]?.stringValue
        default:
            break
        }
    }
}

extension SDQClient {
    /// Follows the task's event stream (`GET /v1/tasks/{id}/events`) until it ends and returns
    /// the final document, calling `onUpdate` as it moves. It reconnects with `Last-Event-ID`
    /// when the server ends the stream early (its `reconnect` event, a front door's time limit)
    /// or the connection drops (after the server's `retry` delay), and falls back to polling
    /// (``wait(_:interval:timeout:onUpdate:)``) where streaming is not available: an API without
    /// the route, a proxy that refuses it, or three failed connections in a row.
    public func follow(
        _ id: String, timeout: Duration = .seconds(600), onUpdate: @escaping @Sendable (TaskUpdate) -> Void = { _ in }
    ) async throws(ClientError) -> TaskDocument {
        let deadline = ContinuousClock.now + timeout
        var update = TaskUpdate(id: id, status: .queued)
        var lastEventID: String?
        var retry = Duration.seconds(1)
        var failures = 0
        while ContinuousClock.now < deadline {
            let outcome = await streamOnce(id, lastEventID: lastEventID, until: deadline, update: &update, onUpdate: onUpdate)
            lastEventID = outcome.lastEventID ?? lastEventID
            if let milliseconds = outcome.retry { retry = .milliseconds(milliseconds) }
            switch outcome.end {
            case .ended(let document):
                return document
            case .over:
                return try await status(id)
            case .refused(let error):
                throw error
            case .unavailable:
                return try await poll(id, until: deadline, onUpdate: onUpdate)
            case .resume:
                failures = 0
            case .dropped:
                failures += 1
                if failures >= 3 { return try await poll(id, until: deadline, onUpdate: onUpdate) }
                try? await Task.sleep(for: retry)
            }
        }
        throw ClientError(code: "timeout", message: "task \(id) did not finish in time", field: nil, status: 0)
    }

    private func poll(_ id: String, until deadline: ContinuousClock.Instant, onUpdate: @escaping @Sendable (TaskUpdate) -> Void)
        async throws(ClientError) -> TaskDocument
    {
        try await wait(id, timeout: max(.zero, deadline - .now)) { onUpdate(TaskUpdate(document: $0)) }
    }

    private enum StreamEnd {
        /// The terminal event, with the final document.
        case ended(TaskDocument)
        /// 204: the task ended before (the last event seen was its terminal one).
        case over
        /// The server refused for good (the task is unknown, the key is wrong).
        case refused(ClientError)
        /// This API or the way to it does not stream.
        case unavailable
        /// The server asked for a reconnection (`reconnect`) or ended the stream cleanly.
        case resume
        /// The connection failed or broke.
        case dropped
    }

    /// One connection to the stream.
    private func streamOnce(
        _ id: String, lastEventID: String?, until deadline: ContinuousClock.Instant, update: inout TaskUpdate,
        onUpdate: @Sendable (TaskUpdate) -> Void
    ) async -> (end: StreamEnd, lastEventID: String?, retry: Int?) {
        var request = HTTPClientRequest(url: baseURL + "/v1/tasks/\(id)/events")
        request.headers.add(name: "Accept", value: "text/event-stream")
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        if let lastEventID { request.headers.add(name: "Last-Event-ID", value: lastEventID) }
        var parser = ServerSentEventParser()
        do {
            let remaining = max(.zero, deadline - .now)
            let response = try await client.execute(request, deadline: .now() + .milliseconds(Int64(remaining.milliseconds)))
            switch response.status.code {
            case 200 where (response.headers.first(name: "content-type") ?? "").hasPrefix("text/event-stream"):
                break
            case 204:
                return (.over, lastEventID, nil)
            case 401, 403:
                return (.refused(await Self.error(from: response)), lastEventID, nil)
            case 404:
                // An unknown task, or an API without event streams: the status says which.
                do {
                    _ = try await status(id)
                    return (.unavailable, lastEventID, nil)
                } catch {
                    return (.refused(error), lastEventID, nil)
                }
            case 500...:
                return (.dropped, lastEventID, nil)
            default:
                return (.unavailable, lastEventID, nil)
            }
            for try await piece in response.body {
                for event in parser.feed(piece.readableBytesView) {
                    switch event.event {
                    case "succeeded", "failed", "cancelled":
                        guard let document = try? JSONDecoder().decode(TaskDocument.self, from: Data(event.data.utf8)) else { continue }
                        return (.ended(document), parser.lastEventID, parser.retry)
                    case "reconnect":
                        return (.resume, parser.lastEventID, parser.retry)
                    default:
                        update.apply(event)
                        onUpdate(update)
                    }
                }
            }
            return (.resume, parser.lastEventID ?? lastEventID, parser.retry)
        } catch {
            return (.dropped, parser.lastEventID ?? lastEventID, parser.retry)
        }
    }

    private static func error(from response: HTTPClientResponse) async -> ClientError {
        let data = (try? await response.body.collect(upTo: 1 << 20)).map { Data($0.readableBytesView) } ?? Data()
        return error(status: Int(response.status.code), data: data)
    }
}
