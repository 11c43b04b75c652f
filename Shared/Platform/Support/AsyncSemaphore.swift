import Foundation
import Synchronization

/// A counting semaphore for async code; a cancelled waiter stops waiting and gets `false`.
public final class AsyncSemaphore: Sendable {
    private struct State {
        var value: Int
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
        var nextID: UInt64 = 0
        var cancelled: Set<UInt64> = []
    }

    private let state: Mutex<State>

    /// A semaphore with `value` permits.
    public init(value: Int) {
        state = Mutex(State(value: value))
    }

    /// Takes a permit, waiting for one if none is free. Returns false if the task was cancelled.
    public func wait() async -> Bool {
        let id: UInt64? = state.withLock { state in
            if state.value > 0 {
                state.value -= 1
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return true }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // A signal may have come between the first lock and this one: take its permit.
                let resumeWith: Bool? = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return false }
                    if state.value > 0 {
                        state.value -= 1
                        return true
                    }
                    state.waiters.append((id, continuation))
                    return nil
                }
                if let resumeWith { continuation.resume(returning: resumeWith) }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Bool, Never>? = state.withLock { state in
                if let index = state.waiters.firstIndex(where: { $0.id == id }) {
                    return state.waiters.remove(at: index).continuation
                }
                state.cancelled.insert(id)
                return nil
            }
            waiter?.resume(returning: false)
        }
    }

    /// Returns a permit, waking the longest waiter.
    public func signal() {
        let waiter: CheckedContinuation<Bool, Never>? = state.withLock { state in
            if state.waiters.isEmpty {
                state.value += 1
                return nil
            }
            return state.waiters.removeFirst().continuation
        }
        waiter?.resume(returning: true)
    }
}
