import Foundation

/// Wall-clock time in epoch milliseconds, the unit of every timestamp sdq stores or reports.
/// Where a store reads the wall-clock time (epoch milliseconds): the system clock, or in tests a
/// clock the test moves (so visibility timeouts lapse without sleeping).
public struct EpochTime: Sendable {
    public let now: @Sendable () -> Int64

    public init(now: @escaping @Sendable () -> Int64) { self.now = now }

    /// The system clock.
    public static let system = EpochTime { EpochClock.nowMillis() }
}

public enum EpochClock {
    /// Now, in milliseconds since 1970-01-01T00:00:00Z.
    public static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded())
    }
}

extension Duration {
    /// The duration in whole milliseconds (rounded toward zero).
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
