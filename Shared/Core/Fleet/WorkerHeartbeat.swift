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
    /// The SHA-256 (first 16 hex digits, ``digestPrefix(_:)``) of the registered checkpoint
    /// loaded now, when the last task named one.
    public var loadedDigest: String?
    /// The registered checkpoints in the worker's model cache, by digest prefix: where the
    /// dispatcher finds a pool that needs no download.
    public var cached: [String] = []
    /// Bytes in the model cache, and its bound (nil without a cache).
    public var cacheBytes: Int64?
    public var cacheLimitBytes: Int64?
    /// Required models (the pool's `required_models`) not yet present and verified: the worker
    /// takes no task while any are (it stays `starting`).
    public var missingModels: [String] = []
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

    /// The short form of a SHA-256 that heartbeats carry (64 bits: enough to tell files apart,
    /// a quarter of the bytes on every heartbeat write).
    public static func digestPrefix(_ sha256: String) -> String { String(sha256.prefix(16)) }

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
        case loadedDigest = "loaded_sha256", cached, cacheBytes = "cache_bytes", cacheLimitBytes = "cache_limit_bytes"
        case missingModels = "missing_models"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        pool = try c.decode(String.self, forKey: .pool)
        worker = try c.decode(String.self, forKey: .worker)
        state = try c.decode(State.self, forKey: .state)
        currentTask = try c.decodeIfPresent(String.self, forKey: .currentTask)
        loadedModel = try c.decodeIfPresent(String.self, forKey: .loadedModel)
        runtimeReachable = try c.decode(Bool.self, forKey: .runtimeReachable)
        runtimeError = try c.decodeIfPresent(String.self, forKey: .runtimeError)
        gpuBusyFraction = try c.decodeIfPresent(Double.self, forKey: .gpuBusyFraction) ?? 0
        idleGapMillis = try c.decodeIfPresent(Int64.self, forKey: .idleGapMillis)
        startedAt = try c.decode(Int64.self, forKey: .startedAt)
        seenAt = try c.decode(Int64.self, forKey: .seenAt)
        expiresAt = try c.decode(Int64.self, forKey: .expiresAt)
        // Heartbeats of workers older than the model cache have none of these.
        loadedDigest = try c.decodeIfPresent(String.self, forKey: .loadedDigest)
        cached = try c.decodeIfPresent([String].self, forKey: .cached) ?? []
        cacheBytes = try c.decodeIfPresent(Int64.self, forKey: .cacheBytes)
        cacheLimitBytes = try c.decodeIfPresent(Int64.self, forKey: .cacheLimitBytes)
        missingModels = try c.decodeIfPresent([String].self, forKey: .missingModels) ?? []
    }
}
