import Foundation
import SDQPlatform

/// Wakes long-polling receivers in this process as soon as a message arrives on their queue.
/// Receivers in other processes fall back to a short poll interval.
///
/// Each queue has a generation counter that every arrival advances. A receiver reads it before
/// looking for messages and waits "since" that generation, so an arrival between its look and its
/// wait is not lost.
///
/// Every waiter token ends in exactly one of three ways, each of which leaves no state behind:
/// signalled (then abandoned), abandoned while waiting, or abandoned before it started waiting.
actor ArrivalSignal {
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    private var signalled: Set<UUID> = []
    private var abandonedEarly: Set<UUID> = []
    private var generations: [String: UInt64] = [:]

    /// The current arrival generation of `queue`.
    func generation(of queue: String) -> UInt64 { generations[queue, default: 0] }

    private func wait(queue: String, token: UUID, since generation: UInt64) async {
        if abandonedEarly.remove(token) != nil { return }
        if generations[queue, default: 0] != generation {
            signalled.insert(token)
            return
        }
        await withCheckedContinuation { continuation in
            waiters[queue, default: [:]][token] = continuation
        }
    }

    /// Resumes every receiver waiting on `queue`.
    func signal(queue: String) {
        generations[queue, default: 0] &+= 1
        guard let pending = waiters.removeValue(forKey: queue) else { return }
        for (token, continuation) in pending {
            signalled.insert(token)
            continuation.resume()
        }
    }

    /// Drops the counter of `queue` (a key that will not be signalled again, such as a task that
    /// ended), so keys do not accumulate. A waiter that read the counter before sees it changed.
    func forget(queue: String) {
        generations.removeValue(forKey: queue)
    }

    private func abandon(queue: String, token: UUID) {
        if let continuation = waiters[queue]?.removeValue(forKey: token) {
            continuation.resume()
        } else if signalled.remove(token) == nil {
            abandonedEarly.insert(token)
        }
    }

    /// Waits for an arrival on `queue` after `generation`, or for `timeout`, whichever comes first.
    nonisolated func waitForArrival(queue: String, since generation: UInt64, timeout: Duration) async {
        let token = UUID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.wait(queue: queue, token: token, since: generation) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            await self.abandon(queue: queue, token: token)
            group.cancelAll()
        }
    }
}
