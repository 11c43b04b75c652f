/// What one event does to a record: from which states it may happen, what else must hold, and
/// what it writes.
public struct TaskTransition: Sendable, Equatable {
    /// The statuses the record must be in.
    public var allowedFrom: Set<TaskStatus>
    /// Further conditions on the record.
    public var guards: [TaskGuard]
    /// The writes, when they do not depend on the record's other fields (a store may then apply
    /// them without reading it first); nil when the event is applied by reading the record.
    public var fields: [TaskField]?

    /// Whether the transition may be applied to `record`.
    public func permits(_ record: TaskRecord) -> Bool {
        allowedFrom.contains(record.status) && guards.allSatisfy { $0.holds(for: record) }
    }
}

/// What a service should do after applying an event (the lifecycle's actions out).
public enum TaskAction: Sendable, Equatable {
    /// Nothing more: the task is where it should be (or gone).
    case none
    /// Announce the ended task (manifest, notification, webhook): this caller holds the claim.
    case announce(TaskRecord)
    /// The task ended without an announcement held by anyone: claim it.
    case claimAnnouncement(TaskRecord)
    /// Another writer holds a live claim, or the task has not ended yet: try again later.
    case retryLater
    /// Send the task to its pool lane: its dispatch is recorded.
    case sendToLane
    /// The task was cancelled and its ending was not announced yet: send a `cancelled` result
    /// so the result-writer ends it like any other (manifest, notification, webhook).
    case forwardCancel(TaskRecord)
}

/// The task lifecycle, `queued → dispatched → running → succeeded | failed | cancelled`, as one
/// pure state machine shared by every service: events in (``TaskEvent``), writes and actions out,
/// no I/O. Stores apply its transitions conditionally (``TaskStore/apply(_:to:)``), so duplicate
/// and out-of-order deliveries and races between services are decided here and nowhere else.
public enum TaskLifecycle {
    /// How long an announcement claim holds before another result-writer may take it over (its
    /// holder crashed between claiming and finishing).
    public static let claimLifetimeMillis: Int64 = 60_000
    /// The error code of a task whose publish failed.
    public static let submitFailedCode = "submit_failed"

    static let terminal: Set<TaskStatus> = [.succeeded, .failed, .cancelled]

    /// The transition an event asks for.
    public static func transition(for event: TaskEvent) -> TaskTransition {
        switch event {
        case .dispatched(let pool, let model, let at, let position, let message):
            var fields: [TaskField] = [.status(.dispatched), .pool(pool), .model(model), .dispatchedAtIfAbsent(at)]
            if let position { fields.append(.queuePositionIfAbsent(position)) }
            guard let message else { return TaskTransition(allowedFrom: [.queued], guards: [], fields: fields) }
            fields.append(.dispatchMessage(message))
            return TaskTransition(allowedFrom: [.queued, .dispatched], guards: [.queuedOrDispatchedBy(message: message)], fields: fields)
        case .dispatchRecorded(let pool, let model, let at, let position):
            var fields: [TaskField] = [.pool(pool), .model(model), .dispatchedAtIfAbsent(at)]
            if let position { fields.append(.queuePositionIfAbsent(position)) }
            return TaskTransition(allowedFrom: [.running], guards: [], fields: fields)
        case .started(let worker, let at):
            return TaskTransition(
                allowedFrom: TaskStatus.nonTerminal, guards: [],
                fields: [.status(.running), .worker(worker), .progress(0), .startedAt(at)])
        case .progressed(let value):
            return TaskTransition(allowedFrom: TaskStatus.nonTerminal, guards: [], fields: [.progress(min(1, max(0, value)))])
        case .previewed(let key, let at):
            return TaskTransition(allowedFrom: TaskStatus.nonTerminal, guards: [], fields: [.preview(key: key, at: at)])
        case .finished(let conclusion, let claim):
            return TaskTransition(allowedFrom: TaskStatus.nonTerminal, guards: [], fields: finishFields(conclusion, claim: claim))
        case .cancelled(let at, let message):
            return TaskTransition(
                allowedFrom: TaskStatus.nonTerminal, guards: [],
                fields: [.status(.cancelled), .cancelRequested(true), .error(TaskFailure(code: "cancelled", message: message)), .finishedAt(at)])
        case .submitFailed:
            return TaskTransition(
                allowedFrom: [.queued], guards: [],
                fields: [.status(.failed), .error(TaskFailure(code: submitFailedCode, message: "the task could not be queued; submit it again"))])
        case .resubmitted:
            return TaskTransition(allowedFrom: [.failed], guards: [.submitFailed], fields: [.status(.queued), .error(nil)])
        case .claimAnnouncement(let claim):
            return TaskTransition(
                allowedFrom: terminal, guards: [.announcementClaimable(staleBefore: claim.at - claimLifetimeMillis)],
                fields: [.manifestKey(claim.manifestKey), .announceClaim(token: claim.token, at: claim.at)])
        case .releaseAnnouncement(let token):
            return TaskTransition(allowedFrom: terminal, guards: [.claimHeld(token: token)], fields: [.announceClaim(token: nil, at: nil)])
        case .announced(let token, let at, let notRequested):
            return TaskTransition(
                allowedFrom: terminal, guards: [.claimHeld(token: token)],
                fields: notRequested ? nil : [.announcedAt(at), .announceClaim(token: nil, at: nil)])
        case .webhookAttempted, .webhookDeadLettered:
            return TaskTransition(allowedFrom: Set(TaskStatus.allCases), guards: [], fields: nil)
        case .purged:
            return TaskTransition(allowedFrom: terminal, guards: [.announced], fields: nil)
        }
    }

    private static func finishFields(_ c: TaskConclusion, claim: AnnouncementClaim) -> [TaskField] {
        var fields: [TaskField] = [.status(c.status)]
        if c.status == .succeeded { fields.append(.progress(1)) }
        fields.append(.images(c.images))
        if c.status != .succeeded, let error = c.error { fields.append(.error(error)) }
        if let worker = c.worker, !worker.isEmpty { fields.append(.worker(worker)) }
        if let pool = c.pool, !pool.isEmpty { fields.append(.pool(pool)) }
        if let attempts = c.attempts, attempts > 0 { fields.append(.attempts(attempts)) }
        if let at = c.startedAt, at > 0 { fields.append(.startedAt(at)) }
        if let at = c.runtimeStartedAt, at > 0 { fields.append(.runtimeStartedAt(at)) }
        if let at = c.runtimeFinishedAt, at > 0 { fields.append(.runtimeFinishedAt(at)) }
        if let at = c.workerReceivedAt, at > 0 { fields.append(.workerReceivedAt(at)) }
        if let at = c.inputsReadyAt, at > 0 { fields.append(.inputsReadyAt(at)) }
        if let at = c.uploadedAt, at > 0 { fields.append(.uploadedAt(at)) }
        fields.append(.finishedAt(c.finishedAt))
        fields.append(.manifestKey(claim.manifestKey))
        fields.append(.announceClaim(token: claim.token, at: claim.at))
        return fields
    }

    /// Applies `event` to `record` if its transition permits; returns whether it did. The record
    /// is left unchanged when not.
    @discardableResult
    public static func apply(_ event: TaskEvent, to record: inout TaskRecord) -> Bool {
        let transition = transition(for: event)
        guard transition.permits(record) else { return false }
        if let fields = transition.fields {
            for field in fields { field.apply(to: &record) }
            return true
        }
        switch event {
        case .announced(_, let at, _):
            record.announcedAt = at
            record.announceClaim = nil
            record.announceClaimAt = nil
            if record.callback != nil {
                var state = record.webhook ?? WebhookState()
                state.status = .notRequested
                record.webhook = state
            }
        case .webhookAttempted(let attempt, let delivery):
            var state = record.webhook ?? WebhookState()
            state.record(attempt)
            if let delivery, state.status != .succeeded { state.status = delivery }
            record.webhook = state
        case .webhookDeadLettered:
            guard record.callback != nil else { return true }
            var state = record.webhook ?? WebhookState()
            if state.status != .succeeded { state.status = .failed }
            record.webhook = state
        case .purged(let at):
            if record.purgedAt == nil { record.purgedAt = at }
            record.parameters = nil
            record.context = nil
            record.callback?.secret = nil
            record.previewKey = nil
            record.previewAt = nil
            record.manifestKey = nil
        default:
            break
        }
        return true
    }

    // MARK: Actions out

    /// What a result-writer does after applying ``TaskEvent/finished(_:claim:)`` or
    /// ``TaskEvent/claimAnnouncement(_:)`` with `claim`.
    public static func afterClaim(_ outcome: UpdateOutcome, claim: AnnouncementClaim) -> TaskAction {
        switch outcome {
        case .notFound:
            return .none
        case .applied(let record):
            return record.announceClaim == claim.token && record.announcedAt == nil ? .announce(record) : .none
        case .conflict(let current):
            guard current.status.isTerminal else { return .retryLater }  // not ended yet: a claim waits for the ending
            if current.announcedAt != nil { return .none }
            if current.announceClaim == claim.token { return .announce(current) }
            let claimable = TaskGuard.announcementClaimable(staleBefore: claim.at - claimLifetimeMillis).holds(for: current)
            return claimable ? .claimAnnouncement(current) : .retryLater
        }
    }

    /// What the dispatcher does after applying ``TaskEvent/dispatched(pool:model:at:queuePosition:message:)``,
    /// which it writes before the lane send: send when it applied (the task was queued, or this
    /// very message's dispatch was recorded before); otherwise the task is already on its way,
    /// running or ended — nothing, unless a cancel's ending is owed.
    public static func afterDispatch(_ outcome: UpdateOutcome) -> TaskAction {
        switch outcome {
        case .applied: return .sendToLane
        case .notFound: return .none
        case .conflict(let current): return endingOwed(current) ? .forwardCancel(current) : .none
        }
    }

    /// What a service that meets a task it will not run (the dispatcher before routing, a worker
    /// whose start was refused) does: forward a cancel whose ending is owed, else nothing.
    public static func onSkipped(_ record: TaskRecord) -> TaskAction {
        endingOwed(record) ? .forwardCancel(record) : .none
    }

    /// A cancelled task that no result-writer has announced: the cancel's own result may have
    /// been lost, so whoever holds the task's message sends one (the writer ignores a repeat).
    static func endingOwed(_ record: TaskRecord) -> Bool {
        record.status == .cancelled && record.announcedAt == nil
    }
}
