/// What one GPU worker says of itself, every few seconds, into the task store: the fleet's
/// evidence for `GET /v1/workers`, pool health and `sdq doctor`. The record expires by itself
/// (``expiresAt``, a few heartbeats after the last), so a worker that vanished drops out.
public struct WorkerHeartbeat: Sendable, Codable, Equatable {
    /// What the worker is doing.
    public enum State: String, Sendable, Codable, CaseIterable {
        /// Waiting for its runtime to answer; takes no task yet.
        case starting
        /// Ready, no task on the runtime.
        case idle
        /// A task is on the runtime.
        case running
        /// Shutting down (SIGTERM: Spot interruption, scale-in): takes no more tasks.
        case draining
    }

    public var pool: String
    /// The worker's id (`SDQ_WORKER_ID`, else the host name and process).
    public var worker: String
    public var state: State
    /// The task on the runtime now, while running.
    public var currentTask: String?
    /// The model of the last task the runtime ran.
    public var loadedModel: String?
    /// Whether the runtime answered at the last try (its readiness, or the last task).
    public var runtimeReachable: Bool
    /// The runtime's last error (`code: message`), until a task succeeds again.
    public var runtimeError: String?
    /// The share of the last minute the runtime spent generating (its own start to end of each
    /// job), 0 to 1.
    public var gpuBusyFraction: Double
    /// The longest time within the last minute that the runtime sat idle between two jobs
    /// while this worker ran tasks (nil when fewer than two jobs ended in that minute).
    public var idleGapMillis: Int64?
    /// When the worker started, epoch milliseconds.
    public var startedAt: Int64
    /// When this heartbeat was written.
    public var seenAt: Int64
    /// After this the record no longer counts (and is deleted by the store's expiry).
    public var expiresAt: Int64

    public init(
        pool: String, worker: String, state: State, currentTask: String? = nil, loadedModel: String? = nil,
        runtimeReachable: Bool, runtimeError: String? = nil, gpuBusyFraction: Double = 0, idleGapMillis: Int64? = nil,
        startedAt: Int64, seenAt: Int64, expiresAt: Int64
    ) {
        self.pool = pool
        self.worker = worker
        self.state = state
        self.currentTask = currentTask
        self.loadedModel = loadedModel
        self.runtimeReachable = runtimeReachable
        self.runtimeError = runtimeError
        self.gpuBusyFraction = gpuBusyFraction
        self.idleGapMillis = idleGapMillis
        self.startedAt = startedAt
        self.seenAt = seenAt
        self.expiresAt = expiresAt
    }

    /// How long a store keeps a heartbeat after it expired: the evidence of workers that came
    /// and went (``PoolHealth``'s crash loop).
    public static let retainedFor: Int64 = 600_000

    /// Whether the worker still counts as present at `now`.
    public func isLive(at now: Int64) -> Bool { expiresAt > now }

    /// Whether the worker went away without saying so: its heartbeat expired while it was not
    /// draining (a crash, an OOM kill, a node lost), within `window` before `now`.
    public func vanished(at now: Int64, within window: Int64 = retainedFor) -> Bool {
        !isLive(at: now) && state != .draining && expiresAt > now - window
    }

    enum CodingKeys: String, CodingKey {
        case pool, worker, state
        case currentTask = "current_task", loadedModel = "loaded_model", runtimeReachable = "runtime_reachable"
        case runtimeError = "runtime_error", gpuBusyFraction = "gpu_busy_fraction", idleGapMillis = "idle_gap_ms"
        case startedAt = "started_at", seenAt = "seen_at", expiresAt = "expires_at"
    }
}
