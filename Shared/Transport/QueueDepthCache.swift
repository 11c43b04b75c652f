import SDQCore
import Synchronization

/// Queue depths read at most once per `maxAge` per queue and shared by every request meanwhile:
/// a queue position or a pool's backlog is approximate anyway (SQS's counts are), and reading it
/// per request would cost a `GetQueueAttributes` per submission and status read. Concurrent
/// requests that find no fresh reading wait for the one read already under way.
public final class QueueDepthCache: Sendable {
    private struct Entry {
        var depth: QueueDepth
        var at: Duration
    }
    private struct State {
        var entries: [String: Entry] = [:]
        /// Queues being read now, with who waits for the reading.
        var waiting: [String: [CheckedContinuation<QueueDepth?, Never>]] = [:]
    }
    private enum Step {
        case cached(QueueDepth)
        case read
        case join
    }
    private let state = Mutex(State())
    /// How long a reading serves.
    public let maxAge: Duration
    /// The clock readings age on (a test clock in tests).
    let clock: ServiceClock

    public init(maxAge: Duration = .seconds(1), clock: ServiceClock = .continuous) {
        self.maxAge = maxAge
        self.clock = clock
    }

    /// The queue's depth, read now if the last reading is older than ``maxAge`` and nobody is
    /// reading it already; nil when it cannot be read.
    public func depth(of queue: any MessageQueue) async -> QueueDepth? {
        let name = queue.name
        let now = clock.elapsed()
        let maxAge = self.maxAge
        let step: Step = state.withLock { state in
            if let entry = state.entries[name], now - entry.at <= maxAge { return .cached(entry.depth) }
            if state.waiting[name] != nil { return .join }
            state.waiting[name] = []
            return .read
        }
        switch step {
        case .cached(let depth):
            return depth
        case .join:
            return await withCheckedContinuation { continuation in
                let finished: QueueDepth?? = state.withLock { state in
                    guard state.waiting[name] != nil else { return .some(state.entries[name]?.depth) }
                    state.waiting[name]?.append(continuation)
                    return nil
                }
                if let finished { continuation.resume(returning: finished) }
            }
        case .read:
            let depth = try? await queue.depth()
            let waiters = state.withLock { state in
                if let depth { state.entries[name] = Entry(depth: depth, at: now) }
                return state.waiting.removeValue(forKey: name) ?? []
            }
            for waiter in waiters { waiter.resume(returning: depth) }
            return depth
        }
    }
}
