/// Something that happened to a task, as the services report it to the ``TaskLifecycle``.
///
/// Every status change and every piece of bookkeeping on a task record is one of these events;
/// services never write a record's fields by hand (see ``TaskStore/apply(_:to:)``).
public enum TaskEvent: Sendable, Equatable {
    /// The dispatcher routes the task to a pool lane (`queued → dispatched`), recorded before the
    /// lane send. With `message` (the dispatch message's id) a redelivery of the same message is
    /// allowed again (`dispatched → dispatched`), since its earlier send may not have happened.
    case dispatched(pool: String, model: String, at: Int64, queuePosition: Int?, message: String? = nil)
    /// The dispatch of a task that a fast worker already marked `running`: only the dispatch's
    /// facts are recorded, the status stays.
    case dispatchRecorded(pool: String, model: String, at: Int64, queuePosition: Int?)
    /// A worker started the task on its runtime (`queued | dispatched | running → running`).
    case started(worker: String, at: Int64)
    /// The worker's latest progress, 0…1.
    case progressed(Double)
    /// The worker stored a newer preview of the running task (object `key`, at epoch ms `at`).
    case previewed(key: String, at: Int64)
    /// A result arrived: the task ends (`succeeded | failed | cancelled`), and the writer that
    /// applies it claims the announcement in the same write.
    case finished(TaskConclusion, claim: AnnouncementClaim)
    /// A client (or operator) cancelled the task.
    case cancelled(at: Int64, message: String)
    /// The API could not publish the recorded task; nothing would ever run it.
    case submitFailed
    /// A repeat of a request whose publish failed: the task is queued again and republished.
    /// The one transition out of a terminal state, allowed only from `failed` with `submit_failed`.
    case resubmitted
    /// A result-writer claims the announcement of an ended task (a duplicate result, a cancel, or
    /// a takeover of a claim whose holder died).
    case claimAnnouncement(AnnouncementClaim)
    /// The claim's holder could not announce: the claim is released so the next attempt may.
    case releaseAnnouncement(token: String)
    /// The claim's holder sent the notification and queued the `completed` webhook.
    case announced(token: String, at: Int64, webhookNotRequested: Bool)
    /// A webhook delivery attempt was made; `delivery` is the `completed` event's new state.
    case webhookAttempted(WebhookAttempt, delivery: WebhookDelivery?)
    /// The `completed` webhook could not be processed at all (its message was dead-lettered).
    case webhookDeadLettered
    /// The owner (or an operator) deleted the ended task's data on request: the record stays as a
    /// tombstone (status, timings, usage, idempotency key), without the prompt, parameters,
    /// context, webhook secret or object keys.
    case purged(at: Int64)
}

/// How a task ended, as its `TaskResult` says.
public struct TaskConclusion: Sendable, Equatable {
    public var status: TaskStatus
    public var images: [ImageRecord]
    /// The failure (for `failed`) or the cancel's reason (for `cancelled`).
    public var error: TaskFailure?
    public var worker: String?
    public var pool: String?
    public var attempts: Int?
    public var startedAt: Int64?
    public var runtimeStartedAt: Int64?
    public var runtimeFinishedAt: Int64?
    public var finishedAt: Int64
    /// The worker's other stage times (received, inputs ready, uploaded).
    public var workerReceivedAt: Int64?
    public var inputsReadyAt: Int64?
    public var uploadedAt: Int64?

    public init(
        status: TaskStatus, images: [ImageRecord] = [], error: TaskFailure? = nil, worker: String? = nil, pool: String? = nil,
        attempts: Int? = nil, startedAt: Int64? = nil, runtimeStartedAt: Int64? = nil, runtimeFinishedAt: Int64? = nil,
        finishedAt: Int64, workerReceivedAt: Int64? = nil, inputsReadyAt: Int64? = nil, uploadedAt: Int64? = nil
    ) {
        self.workerReceivedAt = workerReceivedAt
        self.inputsReadyAt = inputsReadyAt
        self.uploadedAt = uploadedAt
        self.status = status
        self.images = images
        self.error = error
        self.worker = worker
        self.pool = pool
        self.attempts = attempts
        self.startedAt = startedAt
        self.runtimeStartedAt = runtimeStartedAt
        self.runtimeFinishedAt = runtimeFinishedAt
        self.finishedAt = finishedAt
    }
}

/// A result-writer's claim on announcing a task, so concurrent writers announce it once.
public struct AnnouncementClaim: Sendable, Equatable {
    /// Who holds the claim (unique per attempt).
    public var token: String
    /// When it was taken, epoch milliseconds.
    public var at: Int64
    /// The manifest's object key, recorded with the claim.
    public var manifestKey: String

    public init(token: String, at: Int64, manifestKey: String) {
        self.token = token
        self.at = at
        self.manifestKey = manifestKey
    }
}
