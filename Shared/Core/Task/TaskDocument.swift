import Foundation
import SDQAWS

/// The task status document: the body of `GET /v1/tasks/{id}`, `sdq status --json`, and the result
/// manifest in the object store. Field names are fixed by docs/DESIGN.md.
public struct TaskDocument: Sendable, Codable, Equatable {
    public struct Image: Sendable, Codable, Equatable {
        public var url: String
        public var contentType: String
        public var width: Int
        public var height: Int
        public var seed: Int64
        public var sha256: String

        enum CodingKeys: String, CodingKey {
            case url, width, height, seed, sha256
            case contentType = "content_type"
        }
    }

    public struct Failure: Sendable, Codable, Equatable {
        public var code: String
        public var message: String
    }

    public struct Timings: Sendable, Codable, Equatable {
        // In the order a task meets them.
        public var submittedAt: Int64?
        public var dispatchedAt: Int64?
        public var workerReceivedAt: Int64?
        public var inputsReadyAt: Int64?
        public var startedAt: Int64?
        public var runtimeStartedAt: Int64?
        public var runtimeFinishedAt: Int64?
        public var uploadedAt: Int64?
        public var finishedAt: Int64?

        enum CodingKeys: String, CodingKey {
            case submittedAt = "submitted_at", dispatchedAt = "dispatched_at", startedAt = "started_at"
            case runtimeStartedAt = "runtime_started_at", runtimeFinishedAt = "runtime_finished_at"
            case finishedAt = "finished_at", workerReceivedAt = "worker_received_at", inputsReadyAt = "inputs_ready_at"
            case uploadedAt = "uploaded_at"
        }
    }

    /// Webhook delivery as a client sees it (the secret is never shown).
    public struct Webhook: Sendable, Codable, Equatable {
        public struct Attempt: Sendable, Codable, Equatable {
            public var event: String
            public var attempt: Int
            public var at: Int64
            public var statusCode: Int?
            public var error: String?
            public var durationMs: Int64

            enum CodingKeys: String, CodingKey {
                case event, attempt, at, error
                case statusCode = "status_code", durationMs = "duration_ms"
            }
        }
        public var url: String
        public var status: String
        public var attempts: [Attempt]
    }

    public var id: String
    public var status: TaskStatus
    public var pool: String
    public var model: String
    public var progress: Double
    public var images: [Image]
    public var error: Failure?
    public var worker: String?
    public var timings: Timings
    public var context: JSONValue?
    /// Approximate place in line while the task waits (`queued` or `dispatched`), else nil; see
    /// the API's status handler for how it is estimated.
    public var queuePosition: Int?
    /// The webhook's delivery, when the task has one.
    public var webhook: Webhook?
    /// Dispatch attempts so far, when known (a task that ran or was dead-lettered).
    public var attempts: Int?
    /// The request's generation parameters (A1111 names, the seed as resolved), while the task
    /// has them (a purge removes them).
    public var parameters: JSONValue?
    /// The W3C trace id of the task's trace: find it in X-Ray, Jaeger or the logs (`trace_id`).
    public var traceID: String?
    /// The seed of each image (manifest only).
    public var seeds: [Int64]?
    /// The newest live preview while the task runs (set by the API, which makes the URL).
    public var preview: Preview?
    /// The task's event stream (`GET /v1/tasks/{id}/events`), with a short-lived token in the URL
    /// when the API needs a key, for clients that cannot send headers (`EventSource`). Set by the
    /// API while the task is not over.
    public var eventsURL: String?
    /// What the task used, once it ended: GPU seconds (its runtime's own window) and images.
    public var usage: Usage?
    /// When the task's data was deleted on request (epoch ms); its images are then gone.
    public var purgedAt: Int64?

    /// A task's own usage figures (the same that `GET /v1/usage` adds up).
    public struct Usage: Sendable, Codable, Equatable {
        public var gpuSeconds: Double
        public var images: Int
        public init(gpuSeconds: Double, images: Int) {
            self.gpuSeconds = gpuSeconds
            self.images = images
        }
        enum CodingKeys: String, CodingKey {
            case gpuSeconds = "gpu_seconds", images
        }
    }

    /// A live preview: an image of the task's current step.
    public struct Preview: Sendable, Codable, Equatable {
        public var url: String
        /// When it was stored, epoch milliseconds.
        public var at: Int64
        public init(url: String, at: Int64) {
            self.url = url
            self.at = at
        }
    }

    /// Builds the document; `url` turns an image's object key into the URL a client receives.
    /// `manifest` adds the request parameters and seeds (the result manifest in the object store).
    public init(record: TaskRecord, manifest: Bool = false, url: (ImageRecord) -> String) {
        id = record.id
        status = record.status
        pool = record.pool
        model = record.model
        progress = record.status == .succeeded ? 1 : record.progress
        images = record.images.map {
            Image(url: url($0), contentType: $0.contentType, width: $0.width, height: $0.height, seed: $0.seed, sha256: $0.sha256)
        }
        error = record.error.map { Failure(code: $0.code, message: $0.message) }
        worker = record.worker
        let t = record.timings
        timings = Timings(
            submittedAt: t.submittedAt, dispatchedAt: t.dispatchedAt, workerReceivedAt: t.workerReceivedAt,
            inputsReadyAt: t.inputsReadyAt, startedAt: t.startedAt, runtimeStartedAt: t.runtimeStartedAt,
            runtimeFinishedAt: t.runtimeFinishedAt, uploadedAt: t.uploadedAt, finishedAt: t.finishedAt)
        // A context the API would refuse today (one stored before the nesting limit) is shown as
        // its text rather than dropped or allowed to break the document.
        context = record.context.map { text in (try? JSONValue.parse(Data(text.utf8))) ?? .string(text) }
        attempts = record.attempts
        if let callback = record.callback {
            let state = record.webhook ?? WebhookState()
            webhook = Webhook(
                url: callback.url, status: state.status.rawValue,
                attempts: state.attempts.map {
                    Webhook.Attempt(event: $0.event, attempt: $0.attempt, at: $0.at, statusCode: $0.statusCode, error: $0.error, durationMs: $0.durationMs)
                })
        }
        purgedAt = record.purgedAt
        if record.purgedAt != nil { images = [] }
        if record.status.isTerminal {
            usage = Usage(gpuSeconds: Double(record.gpuMillis ?? 0) / 1000, images: record.images.count)
        }
        parameters = record.parameters.flatMap { try? JSONValue.parse(Data($0.utf8), maxDepth: .max) }
        traceID = record.traceID
        if manifest {
            parameters = parameters ?? .object([:])
            seeds = record.images.isEmpty ? [record.seed] : record.images.map(\.seed)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        // `error` and `worker` are always present (null when absent) so clients can rely on the keys.
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(status, forKey: .status)
        try c.encode(pool, forKey: .pool)
        try c.encode(model, forKey: .model)
        try c.encode(progress, forKey: .progress)
        try c.encode(images, forKey: .images)
        try c.encode(error, forKey: .error)
        try c.encode(worker, forKey: .worker)
        try c.encode(timings, forKey: .timings)
        try c.encodeIfPresent(context, forKey: .context)
        try c.encodeIfPresent(queuePosition, forKey: .queuePosition)
        try c.encodeIfPresent(webhook, forKey: .webhook)
        try c.encodeIfPresent(attempts, forKey: .attempts)
        try c.encodeIfPresent(parameters, forKey: .parameters)
        try c.encodeIfPresent(seeds, forKey: .seeds)
        try c.encodeIfPresent(preview, forKey: .preview)
        try c.encodeIfPresent(eventsURL, forKey: .eventsURL)
        try c.encodeIfPresent(usage, forKey: .usage)
        try c.encodeIfPresent(purgedAt, forKey: .purgedAt)
        try c.encodeIfPresent(traceID, forKey: .traceID)
    }

    enum CodingKeys: String, CodingKey {
        case id, status, pool, model, progress, images, error, worker, timings, context, webhook, attempts, parameters, seeds, preview, usage
        case queuePosition = "queue_position", eventsURL = "events_url", purgedAt = "purged_at", traceID = "trace_id"
    }

    /// JSON with sorted keys. Throws rather than answer an empty or partial document.
    public func encoded(pretty: Bool = false) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// The document as a JSON value (its fields, for messages that add their own).
    public func jsonValue() throws -> JSONValue {
        try JSONValue.parse(try encoded(), maxDepth: .max)
    }
}
