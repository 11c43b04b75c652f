/// A pool's health, judged from its workers' heartbeats and its queues, with the evidence.
///
/// In order of precedence:
/// - `crash_looping`: a worker that was ready cannot reach its runtime (the runtime died or
///   keeps restarting), or workers keep going away without draining (at least
///   ``vanishedForCrashLoop`` within ``WorkerHeartbeat/retainedFor``: a sidecar that crashes, a
///   pod OOM-killed over and over);
/// - `capacity_short`: tasks wait on the pool's lanes and no worker is ready to take them (none
///   running, or all still starting: no GPU capacity, or runtimes that never come up);
/// - `degraded`: messages sit in the pool's dead-letter queues (tasks failed after every retry);
/// - `scaled_to_zero`: no worker (or only draining ones) and nothing waiting;
/// - `healthy`.
public struct PoolHealth: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable {
        case healthy, scaledToZero = "scaled_to_zero", capacityShort = "capacity_short"
        case crashLooping = "crash_looping", degraded
    }

    public var status: Status
    /// One sentence of evidence.
    public var reason: String
    /// Workers with a live heartbeat, and how many of them are ready (idle or running).
    public var workers: Int
    public var readyWorkers: Int
    /// Messages waiting on the pool's lanes (visible, both lanes).
    public var backlog: Int
    /// Messages in the pool's dead-letter queues.
    public var deadLetters: Int
    /// Workers whose runtime does not answer.
    public var unreachable: [String]
    /// Workers that went away without draining within the last ``WorkerHeartbeat/retainedFor``.
    public var vanished: [String] = []

    /// Workers gone without draining, within the window, that make a crash loop (one alone may be
    /// a lost node).
    public static let vanishedForCrashLoop = 2

    /// Judges a pool from its workers' heartbeats (live ones, and those gone recently), its lanes'
    /// visible messages and its dead letters.
    public static func assess(
        _ records: [WorkerHeartbeat], backlog: Int, deadLetters: Int, now: Int64 = EpochClock.nowMillis()
    ) -> PoolHealth {
        let heartbeats = records.filter { $0.isLive(at: now) }
        let vanished = records.filter { $0.vanished(at: now) }.map(\.worker)
        let ready = heartbeats.filter { $0.state == .idle || $0.state == .running }
        let unreachable = ready.filter { !$0.runtimeReachable }
        var health = PoolHealth(
            status: .healthy, reason: "\(ready.count) ready workers, \(backlog) tasks waiting", workers: heartbeats.count,
            readyWorkers: ready.count, backlog: backlog, deadLetters: deadLetters, unreachable: unreachable.map(\.worker),
            vanished: vanished)
        if let first = unreachable.first {
            health.status = .crashLooping
            health.reason = "worker \(first.worker) cannot reach its runtime: \(first.runtimeError ?? "no answer")"
                + (unreachable.count > 1 ? " (and \(unreachable.count - 1) more)" : "")
        } else if vanished.count >= vanishedForCrashLoop {
            health.status = .crashLooping
            health.reason = "\(vanished.count) workers went away without draining in the last \(WorkerHeartbeat.retainedFor / 60_000) minutes ("
                + vanished.prefix(3).joined(separator: ", ") + (vanished.count > 3 ? ", …" : "") + "): they crash or are killed at start"
        } else if backlog > 0, ready.isEmpty {
            health.status = .capacityShort
            health.reason = heartbeats.isEmpty
                ? "\(backlog) tasks waiting and no worker: no GPU capacity, or the pool is not scaled up yet"
                : "\(backlog) tasks waiting and no worker ready: \(heartbeats.filter { $0.state == .starting }.count) still starting "
                    + "(their runtimes have not answered), \(heartbeats.filter { $0.state == .draining }.count) draining"
        } else if deadLetters > 0 {
            health.status = .degraded
            health.reason = "\(deadLetters) messages in the pool's dead-letter queues"
        } else if heartbeats.allSatisfy({ $0.state == .draining }), backlog == 0 {
            // Workers on their way out (scale-in, a finished `sdq generate`) are not capacity.
            health.status = .scaledToZero
            health.reason = heartbeats.isEmpty ? "no workers and nothing waiting" : "\(heartbeats.count) workers draining and nothing waiting"
        }
        return health
    }
}
