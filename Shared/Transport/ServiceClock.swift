/// The clock a service's deadlines and back-offs run on, as offsets from when it was made: the
/// continuous clock, or a test clock the tests advance (so visibility, heartbeat and back-off
/// tests need no sleeps).
public struct ServiceClock: Sendable {
    /// Time since the clock was made.
    public let elapsed: @Sendable () -> Duration
    /// Sleeps for a duration on this clock.
    public let sleepFor: @Sendable (Duration) async throws -> Void

    public init<C: Clock<Duration>>(_ clock: C) {
        let origin = clock.now
        elapsed = { origin.duration(to: clock.now) }
        sleepFor = { try await clock.sleep(for: $0) }
    }

    /// A clock from its two operations (tests wrap a test clock to see when a loop sleeps).
    public init(elapsed: @escaping @Sendable () -> Duration, sleepFor: @escaping @Sendable (Duration) async throws -> Void) {
        self.elapsed = elapsed
        self.sleepFor = sleepFor
    }

    /// The continuous clock.
    public static var continuous: ServiceClock { ServiceClock(ContinuousClock()) }
}
