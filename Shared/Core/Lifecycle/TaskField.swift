/// One field write of a transition, in a form every store can apply the same way: the embedded
/// store to the decoded record, the AWS store as one clause of a DynamoDB `UpdateItem`.
///
/// `ifAbsent` writes keep a value already recorded (the first dispatch time stands); `nil`
/// values clear the field.
public enum TaskField: Sendable, Equatable {
    case status(TaskStatus)
    case progress(Double)
    case preview(key: String, at: Int64)
    case worker(String)
    case pool(String)
    case model(String)
    case images([ImageRecord])
    case error(TaskFailure?)
    case cancelRequested(Bool)
    case attempts(Int)
    case queuePositionIfAbsent(Int)
    case dispatchedAtIfAbsent(Int64)
    case startedAt(Int64)
    case runtimeStartedAt(Int64)
    case runtimeFinishedAt(Int64)
    case finishedAt(Int64)
    case workerReceivedAt(Int64)
    case inputsReadyAt(Int64)
    case uploadedAt(Int64)
    case manifestKey(String)
    case announceClaim(token: String?, at: Int64?)
    case announcedAt(Int64)
    case dispatchMessage(String)

    /// Applies the write to a decoded record.
    public func apply(to record: inout TaskRecord) {
        switch self {
        case .status(let value): record.status = value
        case .progress(let value): record.progress = value
        case .preview(let key, let at):
            record.previewKey = key
            record.previewAt = at
        case .worker(let value): record.worker = value
        case .pool(let value): record.pool = value
        case .model(let value): record.model = value
        case .images(let value): record.images = value
        case .error(let value): record.error = value
        case .cancelRequested(let value): record.cancelRequested = value
        case .attempts(let value): record.attempts = value
        case .queuePositionIfAbsent(let value): if record.queuePositionAtDispatch == nil { record.queuePositionAtDispatch = value }
        case .dispatchedAtIfAbsent(let value): if record.timings.dispatchedAt == nil { record.timings.dispatchedAt = value }
        case .startedAt(let value): record.timings.startedAt = value
        case .runtimeStartedAt(let value): record.timings.runtimeStartedAt = value
        case .runtimeFinishedAt(let value): record.timings.runtimeFinishedAt = value
        case .finishedAt(let value): record.timings.finishedAt = value
        case .workerReceivedAt(let value): record.timings.workerReceivedAt = value
        case .inputsReadyAt(let value): record.timings.inputsReadyAt = value
        case .uploadedAt(let value): record.timings.uploadedAt = value
        case .manifestKey(let value): record.manifestKey = value
        case .announceClaim(let token, let at):
            record.announceClaim = token
            record.announceClaimAt = at
        case .announcedAt(let value): record.announcedAt = value
        case .dispatchMessage(let value): record.dispatchMessage = value
        }
    }
}

/// A condition on a record beyond its status.
public enum TaskGuard: Sendable, Equatable {
    /// Nobody announced the task and no live claim is held: none, or one taken before `staleBefore`.
    case announcementClaimable(staleBefore: Int64)
    /// The claim is held by `token`.
    case claimHeld(token: String)
    /// The task failed because its publish failed (the only terminal state that may reopen).
    case submitFailed
    /// The task is queued, or its dispatch was recorded for this dispatch message.
    case queuedOrDispatchedBy(message: String)
    /// The task's ending was announced (its manifest written): nothing writes its objects again.
    case announced

    /// Whether the record meets the condition.
    public func holds(for record: TaskRecord) -> Bool {
        switch self {
        case .announcementClaimable(let staleBefore):
            guard record.announcedAt == nil else { return false }
            guard record.announceClaim != nil, let at = record.announceClaimAt else { return true }
            return at < staleBefore
        case .claimHeld(let token):
            return record.announceClaim == token
        case .submitFailed:
            return record.error?.code == TaskLifecycle.submitFailedCode
        case .queuedOrDispatchedBy(let message):
            return record.status == .queued || record.dispatchMessage == message
        case .announced:
            return record.announcedAt != nil
        }
    }
}
