/// What ``TaskStore/create(_:)`` did.
public enum CreateOutcome: Sendable, Equatable {
    /// The record was new and is now stored.
    case created(TaskRecord)
    /// A record with the same idempotency key already existed; it is returned unchanged.
    case existing(TaskRecord)
    /// Nothing was stored: the record takes an in-flight slot (``TaskRecord/inFlightSlot``) and
    /// its tenant already has `limit` tasks queued or running.
    case inFlightLimitReached(limit: Int)
}

/// What a conditional update did.
public enum UpdateOutcome: Sendable, Equatable {
    /// The condition held; the new record is returned.
    case applied(TaskRecord)
    /// The record's status was not one of those allowed; the current record is returned unchanged.
    case conflict(TaskRecord)
    /// No such task.
    case notFound
}
