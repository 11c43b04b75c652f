/// A tenant's submission rate: a token bucket of ``burst`` submissions that refills at
/// ``perMinute``, kept as one number per tenant — the theoretical arrival time of the generic cell
/// rate algorithm (GCRA) — so a store that many API instances share decides it with one
/// conditional write.
///
/// Every submission request takes a token, a repeat with the same idempotency key and one refused
/// for another quota included: the rate protects the API, as request rates do.
public struct SubmissionRate: Sendable, Equatable {
    /// Submissions a minute, sustained.
    public var perMinute: Double
    /// Submissions allowed at once after a quiet spell (the bucket's size).
    public var burst: Int

    public init(perMinute: Double, burst: Int) {
        self.perMinute = perMinute
        self.burst = max(1, burst)
    }

    /// Milliseconds between two submissions at the sustained rate (whole milliseconds, rounded
    /// up, so every store computes the same times).
    public var intervalMillis: Int64 { max(1, Int64((60_000 / perMinute).rounded(.up))) }

    /// The window, in seconds, that the IETF `RateLimit-Policy` field names: the time a full
    /// bucket takes to refill, so `q=burst;w=window` states the policy exactly.
    public var windowSeconds: Int { max(1, Self.seconds(Int64(burst) * intervalMillis)) }

    /// The latest stored arrival time at which a submission at `now` is still allowed.
    public func latestArrival(now: Int64) -> Int64 { now + Int64(burst - 1) * intervalMillis }

    /// The decision for a submission at `now` (epoch milliseconds), given the stored theoretical
    /// arrival time (nil: never used). An allowed submission stores ``RateDecision/arrivalTime``.
    public func decide(arrivalTime stored: Int64?, now: Int64) -> RateDecision {
        let interval = intervalMillis
        let base = max(stored ?? now, now)
        if base <= latestArrival(now: now) {
            let next = base + interval
            let capacity = Int64(burst) * interval
            return RateDecision(
                allowed: true, arrivalTime: next, remaining: Int((capacity - (next - now)) / interval),
                resetSeconds: Self.seconds(next - now), retryAfterSeconds: 0)
        }
        return RateDecision(
            allowed: false, arrivalTime: base, remaining: 0, resetSeconds: Self.seconds(base - now),
            retryAfterSeconds: max(1, Self.seconds(base - latestArrival(now: now))))
    }

    private static func seconds(_ millis: Int64) -> Int { max(0, Int((millis + 999) / 1000)) }
}

/// What ``SubmissionRate/decide(arrivalTime:now:)`` decided.
public struct RateDecision: Sendable, Equatable {
    /// Whether the submission may go ahead.
    public var allowed: Bool
    /// The theoretical arrival time to store when allowed (unchanged when refused).
    public var arrivalTime: Int64
    /// Submissions left in the bucket after this one.
    public var remaining: Int
    /// Seconds until the bucket is full again.
    public var resetSeconds: Int
    /// When refused: seconds until one submission is allowed.
    public var retryAfterSeconds: Int

    public init(allowed: Bool, arrivalTime: Int64, remaining: Int, resetSeconds: Int, retryAfterSeconds: Int) {
        self.allowed = allowed
        self.arrivalTime = arrivalTime
        self.remaining = remaining
        self.resetSeconds = resetSeconds
        self.retryAfterSeconds = retryAfterSeconds
    }
}

extension TaskLifecycle {
    /// How a change of a task from `old` to `new` moves its tenant's in-flight count (queued,
    /// dispatched and running tasks), for a task that holds a slot (``TaskRecord/inFlightSlot``):
    /// -1 when it ends, +1 when a task whose publish failed is queued again, else 0. A task
    /// reaches a terminal state through exactly one transition (every terminal event is allowed
    /// only from a non-terminal state), so stores that apply this delta in the same atomic write
    /// as the status give each slot back exactly once — duplicates and crashes cannot do it twice
    /// or never.
    public static func inFlightDelta(from old: TaskStatus?, to new: TaskStatus?) -> Int {
        let wasInFlight = old.map { !$0.isTerminal } ?? false
        let isInFlight = new.map { !$0.isTerminal } ?? false
        switch (wasInFlight, isInFlight) {
        case (true, false): return -1
        case (false, true): return 1
        default: return 0
        }
    }

    /// Whether `event` may end a task (its transition leads to a terminal status): stores must
    /// give back the task's in-flight slot with it.
    public static func mayEnd(_ event: TaskEvent) -> Bool {
        switch event {
        case .finished, .cancelled, .submitFailed: true
        default: false
        }
    }
}
