/// The lifecycle of a task: `queued → dispatched → running → succeeded | failed | cancelled`.
public enum TaskStatus: String, Sendable, Codable, CaseIterable, Hashable {
    case queued, dispatched, running, succeeded, failed, cancelled

    /// Whether no further transition is possible.
    public var isTerminal: Bool {
        switch self {
        case .succeeded, .failed, .cancelled: true
        case .queued, .dispatched, .running: false
        }
    }

    /// The states from which a task may still move on.
    public static let nonTerminal: Set<TaskStatus> = [.queued, .dispatched, .running]
}

/// One produced image as recorded (the object key, not a URL: URLs are made when read).
public struct ImageRecord: Sendable, Codable, Equatable {
    public var key: String
    public var contentType: String
    public var width: Int
    public var height: Int
    public var seed: Int64
    public var sha256: String
    public var size: Int

    public init(key: String, contentType: String, width: Int, height: Int, seed: Int64, sha256: String, size: Int) {
        self.key = key
        self.contentType = contentType
        self.width = width
        self.height = height
        self.seed = seed
        self.sha256 = sha256
        self.size = size
    }
}

/// Stage timestamps in epoch milliseconds (nil: not reached).
public struct TaskTimings: Sendable, Codable, Equatable {
    public var submittedAt: Int64?
    public var dispatchedAt: Int64?
    public var startedAt: Int64?
    public var runtimeStartedAt: Int64?
    public var runtimeFinishedAt: Int64?
    public var finishedAt: Int64?
    /// When the worker received the task's message.
    public var workerReceivedAt: Int64?
    /// When the worker had the task's inputs and it was ready for the runtime.
    public var inputsReadyAt: Int64?
    /// When the worker had stored every image.
    public var uploadedAt: Int64?

    public init(
        submittedAt: Int64? = nil, dispatchedAt: Int64? = nil, startedAt: Int64? = nil,
        runtimeStartedAt: Int64? = nil, runtimeFinishedAt: Int64? = nil, finishedAt: Int64? = nil,
        workerReceivedAt: Int64? = nil, inputsReadyAt: Int64? = nil, uploadedAt: Int64? = nil
    ) {
        self.workerReceivedAt = workerReceivedAt
        self.inputsReadyAt = inputsReadyAt
        self.uploadedAt = uploadedAt
        self.submittedAt = submittedAt
        self.dispatchedAt = dispatchedAt
        self.startedAt = startedAt
        self.runtimeStartedAt = runtimeStartedAt
        self.runtimeFinishedAt = runtimeFinishedAt
        self.finishedAt = finishedAt
    }
}

/// A structured task failure.
public struct TaskFailure: Sendable, Codable, Equatable {
    public var code: String
    public var message: String
    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

/// Where and how a task's webhook is delivered (the secret never leaves the stores).
public struct CallbackSpec: Sendable, Codable, Equatable {
    public var url: String
    /// Standard Webhooks secret (`whsec_…`); nil: deliveries are unsigned.
    public var secret: String?
    /// Events asked for: `completed` (default), `running`, `progress`.
    public var events: [String]

    public init(url: String, secret: String? = nil, events: [String] = []) {
        self.url = url
        self.secret = secret
        self.events = events
    }

    /// The events delivered: those asked for, `completed` when none were named.
    public var effectiveEvents: Set<String> { events.isEmpty ? ["completed"] : Set(events) }
}

/// One webhook delivery attempt as recorded on the task.
public struct WebhookAttempt: Sendable, Codable, Equatable {
    /// `completed`, `running` or `progress`.
    public var event: String
    /// Attempt number of this event's delivery, from 1.
    public var attempt: Int
    /// When the attempt started, epoch milliseconds.
    public var at: Int64
    /// The HTTP status answered, nil when none was (timeout, refused, unreachable).
    public var statusCode: Int?
    /// Why it failed, nil when it succeeded.
    public var error: String?
    public var durationMs: Int64

    public init(event: String, attempt: Int, at: Int64, statusCode: Int?, error: String?, durationMs: Int64) {
        self.event = event
        self.attempt = attempt
        self.at = at
        self.statusCode = statusCode
        self.error = error
        self.durationMs = durationMs
    }
}

/// Where the delivery of a task's `completed` webhook stands.
public enum WebhookDelivery: String, Sendable, Codable, CaseIterable, Hashable {
    /// Queued or retrying.
    case pending
    case succeeded
    /// Attempts exhausted, or the destination refused.
    case failed
    /// The callback did not ask for `completed`.
    case notRequested = "not_requested"

    /// An unknown stored value (a newer version's) reads as `pending`.
    public init(from decoder: any Decoder) throws {
        self = WebhookDelivery(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .pending
    }
}

/// The state of a task's `completed` webhook and the attempts of every event (newest last, at
/// most ``WebhookState/keptAttempts``).
public struct WebhookState: Sendable, Codable, Equatable {
    public var status: WebhookDelivery
    public var attempts: [WebhookAttempt]

    public init(status: WebhookDelivery = .pending, attempts: [WebhookAttempt] = []) {
        self.status = status
        self.attempts = attempts
    }

    /// How many attempts a record keeps.
    public static let keptAttempts = 20

    /// Appends an attempt, dropping the oldest beyond ``keptAttempts``.
    public mutating func record(_ attempt: WebhookAttempt) {
        attempts.append(attempt)
        if attempts.count > Self.keptAttempts { attempts.removeFirst(attempts.count - Self.keptAttempts) }
    }
}

/// The stored state of one task (a DynamoDB item on AWS, a row in the embedded store).
public struct TaskRecord: Sendable, Codable, Equatable {
    public var id: String
    public var status: TaskStatus
    public var pool: String
    public var model: String
    public var kind: TaskKind
    /// Seed actually used (resolved at submission).
    public var seed: Int64
    public var width: Int
    public var height: Int
    public var batchSize: Int
    /// Progress 0…1 as last reported by the worker.
    public var progress: Double
    /// The object key of the newest live preview (one object per task, overwritten) and when it
    /// was stored, epoch milliseconds.
    public var previewKey: String?
    public var previewAt: Int64?
    public var images: [ImageRecord]
    public var error: TaskFailure?
    public var worker: String?
    public var timings: TaskTimings
    /// The client's `Idempotency-Key` (or reference-format task id), if any.
    public var idempotencyKey: String?
    /// A digest of the request, to tell a true repeat from a key reused for another request.
    public var requestDigest: String?
    /// Opaque client JSON, returned with results.
    public var context: String?
    /// Whether a cancel was requested (also reflected by status `cancelled`).
    public var cancelRequested: Bool
    /// Epoch milliseconds after which the record may be purged.
    public var expiresAt: Int64
    /// The object key of the result manifest, once written.
    public var manifestKey: String?
    /// Who submitted the task (derived from the API key; nil on an open API).
    public var tenant: String?
    /// `high` for the high-priority lane; nil for normal (as older records have it).
    public var priority: TaskPriority?
    /// The request's generation parameters as JSON (A1111 names), for the manifest.
    public var parameters: String?
    /// The webhook, if the task named one.
    public var callback: CallbackSpec?
    /// Delivery state of the webhook (nil without a callback).
    public var webhook: WebhookState?
    /// Receives of the task's message when it last ran or was dead-lettered.
    public var attempts: Int?
    /// Messages ahead of the task on its pool queue when it was dispatched, plus one.
    public var queuePositionAtDispatch: Int?
    /// When the terminal notification (SNS, `completed` webhook) was sent, epoch milliseconds.
    public var announcedAt: Int64?
    /// Who is sending the terminal notification now and since when (a claim, so concurrent
    /// result-writers announce a task once; a claim older than a minute is taken over).
    public var announceClaim: String?
    public var announceClaimAt: Int64?
    /// The id of the dispatch-queue message whose dispatch was recorded: a redelivery of that
    /// message (whose lane send may not have happened) may send the task again; any other
    /// message for a dispatched task is a duplicate and is dropped.
    public var dispatchMessage: String?
    /// The tenant whose in-flight quota (`max_in_flight`) this task holds a slot of, set at
    /// submission when the tenant has that quota. The store gives the slot back in the same
    /// atomic write as the task's one terminal transition (``TaskLifecycle/inFlightDelta(from:to:)``).
    public var inFlightSlot: String?
    /// When the task's data was deleted on request (``TaskEvent/purged(at:)``): the record is a
    /// tombstone, kept for idempotency and usage; its images, inputs, previews and manifest are gone.
    public var purgedAt: Int64?
    /// The W3C trace id of the task's trace (every hop's spans and log lines carry it), set at
    /// submission.
    public var traceID: String?

    public init(
        id: String, status: TaskStatus = .queued, pool: String, model: String, kind: TaskKind = .txt2img,
        seed: Int64, width: Int, height: Int, batchSize: Int = 1, progress: Double = 0,
        images: [ImageRecord] = [], error: TaskFailure? = nil, worker: String? = nil,
        timings: TaskTimings = TaskTimings(), idempotencyKey: String? = nil, requestDigest: String? = nil,
        context: String? = nil, cancelRequested: Bool = false, expiresAt: Int64, manifestKey: String? = nil
    ) {
        self.id = id
        self.status = status
        self.pool = pool
        self.model = model
        self.kind = kind
        self.seed = seed
        self.width = width
        self.height = height
        self.batchSize = batchSize
        self.progress = progress
        self.images = images
        self.error = error
        self.worker = worker
        self.timings = timings
        self.idempotencyKey = idempotencyKey
        self.requestDigest = requestDigest
        self.context = context
        self.cancelRequested = cancelRequested
        self.expiresAt = expiresAt
        self.manifestKey = manifestKey
    }
}

extension TaskRecord {
    /// The idempotency key as stored: the client's key within its tenant's scope
    /// (`tenant|key`), so two tenants' keys never meet; the anonymous tenant's keys are stored as
    /// they are, as they were before tenants had names.
    public static func scopedIdempotencyKey(_ key: String, tenant: String) -> String {
        tenant == "anonymous" ? key : "\(tenant)|\(key)"
    }

    /// The idempotency key the client sent (``scopedIdempotencyKey(_:tenant:)`` undone).
    public var clientIdempotencyKey: String? {
        guard let key = idempotencyKey, let tenant, tenant != "anonymous", key.hasPrefix("\(tenant)|") else { return idempotencyKey }
        return String(key.dropFirst(tenant.count + 1))
    }
}

extension TaskRecord {
    /// The GPU time the task used, in milliseconds: its runtime's own window (from the runtime's
    /// start of the generation to its end, as the worker measures it at the runtime: see
    /// ``TaskTimings/runtimeStartedAt``); nil when it never reached a runtime.
    public var gpuMillis: Int64? {
        guard let start = timings.runtimeStartedAt, let end = timings.runtimeFinishedAt, end >= start else { return nil }
        return end - start
    }
}
