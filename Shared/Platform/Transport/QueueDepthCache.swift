import Synchronization

/// Queue depths read at most once per `maxAge` per queue and shared by every request meanwhile:
/// a queue position or a pool's backlog is approximate anyway (SQS's counts are), and reading it
/// per request would cost a `GetQueueAttributes` per submission and status read.
public final class QueueDepthCache: Sendable {
    private struct Entry {
        var depth: QueueDepth
        var at: ContinuousClock.Instant
    }
    private let entries = Mutex<[String: Entry]>([:])
    /// How long a reading serves.
    public let maxAge: Duration

    public init(maxAge: Duration = .seconds(1)) { self.maxAge = maxAge }

    /// The queue's depth, read now if the last reading is older than ``maxAge``; nil when it
    /// cannot be read.
    public func depth(of queue: any MessageQueue) async -> QueueDepth? {
        let name = queue.name
        let now = ContinuousClock.now
        if let cached = entries.withLock({ $0[name] }), now - cached.at <= maxAge { return cached.depth }
        guard let depth = try? await queue.depth() else { return nil }
        entries.withLock { $0[name] = Entry(depth: depth, at: .now) }
        return depth
    }
}
