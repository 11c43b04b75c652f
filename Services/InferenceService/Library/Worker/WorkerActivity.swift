import SDQPlatform
import Synchronization

/// What the worker is doing, as its ``WorkerHeartbeat`` reports it: its state, the tasks on the
/// runtime, the last model, whether the runtime answers, and the runtime's busy windows of the
/// last minute (for the GPU busy fraction and idle gap).
final class WorkerActivity: Sendable {
    private struct State {
        var ready = false
        var draining = false
        /// Tasks on the runtime now, with when each began.
        var running: [(task: String, since: Int64)] = []
        var model: String?
        /// The registered checkpoint's digest of the last task, when it named one.
        var digest: String?
        /// Required models not yet present and verified.
        var missing: [String] = []
        var reachable = false
        var error: String? = "waiting for the runtime to answer"
        /// The runtime's own windows (start, end) of the jobs that ended recently, oldest first.
        var windows: [(start: Int64, end: Int64)] = []
    }

    private let state = Mutex(State())
    /// When the worker started, epoch milliseconds.
    let startedAt = EpochClock.nowMillis()
    /// The span the busy fraction and idle gap cover.
    static let span: Int64 = 60_000

    /// The runtime answered: the worker takes tasks now.
    func ready() {
        state.withLock {
            $0.ready = true
            $0.reachable = true
            $0.error = nil
            $0.missing = []
        }
    }

    /// The runtime answered; the worker still waits for required models (`missing`).
    func waitingForModels(_ missing: [String], error: String?) {
        state.withLock {
            $0.reachable = true
            $0.missing = missing
            $0.error = error
        }
    }

    /// The worker stops taking tasks.
    func drain() { state.withLock { $0.draining = true } }

    /// `task` went to the runtime.
    func began(task: String, model: String, digest: String? = nil, at now: Int64) {
        state.withLock {
            $0.running.append((task, now))
            if !model.isEmpty {
                $0.model = model
                $0.digest = digest
            }
        }
    }

    /// `task` left the runtime: its window, and the runtime's error if it failed.
    func ended(task: String, start: Int64, end: Int64, error: RuntimeError?) {
        state.withLock { state in
            state.running.removeAll { $0.task == task }
            state.windows.append((start, max(start, end)))
            state.windows.sort { $0.start < $1.start }
            state.windows.removeAll { $0.end < end - Self.span }
            if let error {
                state.error = "\(error.code): \(error.message)"
                if error.code == "runtime_unavailable" { state.reachable = false }
            } else {
                state.error = nil
                state.reachable = true
            }
        }
    }

    /// The heartbeat as of `now`.
    func heartbeat(pool: String, worker: String, now: Int64, lifetime: Int64) -> WorkerHeartbeat {
        var heartbeat = beat(pool: pool, worker: worker, now: now, lifetime: lifetime)
        state.withLock {
            heartbeat.loadedDigest = $0.digest.map(WorkerHeartbeat.digestPrefix)
            heartbeat.missingModels = $0.missing
        }
        return heartbeat
    }

    private func beat(pool: String, worker: String, now: Int64, lifetime: Int64) -> WorkerHeartbeat {
        state.withLock { state in
            let from = max(startedAt, now - Self.span)
            var windows = state.windows.filter { $0.end > from }
            windows += state.running.map { ($0.since, now) }
            var busy: Int64 = 0
            var covered = from
            for window in windows.sorted(by: { $0.start < $1.start }) {
                let start = max(window.start, covered), end = min(window.end, now)
                if end > start { busy += end - start }
                covered = max(covered, end)
            }
            let ended = state.windows.filter { $0.end > from }
            var gap: Int64?
            if ended.count >= 2 {
                for index in 1..<ended.count { gap = max(gap ?? 0, max(0, ended[index].start - ended[index - 1].end)) }
            }
            let heartbeatState: WorkerHeartbeat.State =
                state.draining ? .draining : !state.ready ? .starting : state.running.isEmpty ? .idle : .running
            return WorkerHeartbeat(
                pool: pool, worker: worker, state: heartbeatState, currentTask: state.running.first?.task, loadedModel: state.model,
                runtimeReachable: state.reachable, runtimeError: state.error,
                gpuBusyFraction: now > from ? min(1, Double(busy) / Double(now - from)) : 0, idleGapMillis: gap,
                startedAt: startedAt, seenAt: now, expiresAt: now + lifetime)
        }
    }
}
