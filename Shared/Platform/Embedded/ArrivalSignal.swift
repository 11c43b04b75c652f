import Foundation

/// Wakes long-polling receivers in this process as soon as a message arrives on their queue.
/// Receivers in other processes fall back to a short poll interval.
///
/// Every waiter token ends in exactly one of three ways, each of which leaves no state behind:
/// signalled (then abandoned), abandoned while waiting, or abandoned before it started waiting.
actor ArrivalSignal {
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    private var signalled: Set<UUID> = []
    private var abandonedEarly: Set<UUID> = []

    private func wait(queue: String, token: UUID) async {
        if abandonedEarly.remove(token) != nil { return }
        await withCheckedContinuation { continuation in
            waiters[queue, default: [:]][token] = continuation
        }
    }

    /// Resumes every receiver waiting on `queue`.
    func signal(queue: String) {
        guard let pending = waiters.removeValue(forKey: queue) else { return }
        for (token, continuation) in pending {
            signalled.insert(token)
            continuation.resume()
        }
    }

    private func abandon(queue: String, token: UUID) {
        if let continuation = waiters[queue]?.removeValue(forKey: token) {
            continuation.resume()
        } else if signalled.remove(token) == nil {
            abandonedEarly.insert(token)
        }
    }

    /// Waits for an arrival on `queue` or for `timeout`, whichever comes first.
    nonisolated func waitForArrival(queue: String, timeout: Duration) async {
        let token = UUID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.wait(queue: queue, token: token) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            await self.abandon(queue: queue, token: token)
            group.cancelAll()
        }
    }
}
