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

    /// Milliseconds between two submissions at the sustained rate.
    public var intervalMillis: Double { 60_000 / perMinute }

    /// The window, in seconds, that the IETF `RateLimit-Policy` field names: the time a full
    /// bucket takes to refill, so `q=burst;w=window` states the policy exactly.
    public var windowSeconds: Int { max(1, Int((Double(burst) * intervalMillis / 1000).rounded(.up))) }

    /// The decision for a submission at `now` (epoch milliseconds), given the stored theoretical
    /// arrival time (nil: never used). An allowed submission stores ``RateDecision/arrivalTime``.
    public func decide(arrivalTime stored: Int64?, now: Int64) -> RateDecision {
        let interval = intervalMillis
        let base = max(stored ?? now, now)
        let next = Double(base) + interval
        let capacity = Double(burst) * interval
        if next - Double(now) <= capacity + 0.5 {
            let remaining = Int(((capacity - (next - Double(now))) / interval).rounded(.down))
            return RateDecision(
                allowed: true, arrivalTime: Int64(next.rounded(.up)), remaining: max(0, remaining),
                resetSeconds: Self.seconds(next - Double(now)), retryAfterSeconds: 0)
        }
        let wait = Double(base) + interval - capacity - Double(now)
        return RateDecision(
            allowed: false, arrivalTime: base, remaining: 0, resetSeconds: Self.seconds(Double(base - now)),
            retryAfterSeconds: max(1, Self.seconds(wait)))
    }

    private static func seconds(_ millis: Double) -> Int { max(0, Int((millis / 1000).rounded(.up))) }
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
