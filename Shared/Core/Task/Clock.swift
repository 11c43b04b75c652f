import Foundation

/// Wall-clock time in epoch milliseconds, the unit of every timestamp sdq stores or reports.
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
