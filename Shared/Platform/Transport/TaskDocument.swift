import Foundation

/// The task status document: the body of `GET /v1/tasks/{id}`, `sdq status --json`, and the result
/// manifest in the object store. Field names are fixed by ARCHITECTURE.md.
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
        public var submittedAt: Int64?
        public var dispatchedAt: Int64?
        public var startedAt: Int64?
        public var runtimeStartedAt: Int64?
        public var runtimeFinishedAt: Int64?
        public var finishedAt: Int64?

        enum CodingKeys: String, CodingKey {
            case submittedAt = "submitted_at", dispatchedAt = "dispatched_at", startedAt = "started_at"
            case runtimeStartedAt = "runtime_started_at", runtimeFinishedAt = "runtime_finished_at"
            case finishedAt = "finished_at"
        }
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

    /// Builds the document; `url` turns an image's object key into the URL a client receives.
    public init(record: TaskRecord, url: (ImageRecord) -> String) {
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
            submittedAt: t.submittedAt, dispatchedAt: t.dispatchedAt, startedAt: t.startedAt,
            runtimeStartedAt: t.runtimeStartedAt, runtimeFinishedAt: t.runtimeFinishedAt, finishedAt: t.finishedAt)
        context = record.context.flatMap { $0.data(using: .utf8) }.flatMap { try? JSONValue.parse($0) }
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
    }

    enum CodingKeys: String, CodingKey {
        case id, status, pool, model, progress, images, error, worker, timings, context
    }

    /// JSON with sorted keys.
    public func jsonData(pretty: Bool = false) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data()
    }
}
