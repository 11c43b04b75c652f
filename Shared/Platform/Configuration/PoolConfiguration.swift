import Foundation
import Yams

/// One worker pool: a set of workers that serve one runtime and a set of models.
public struct PoolSpec: Sendable, Equatable, Codable {
    /// Pool name (lower-case letters, digits and `-`); also part of its queue name.
    public var name: String
    /// `emulator`, `sdwebui` or `comfyui`.
    public var runtime: String
    /// Models (checkpoints) the pool serves by the runtime's own name, fixed in its image or
    /// volume; the first is its default. May be empty when the pool serves ``families``.
    public var models: [String]
    /// `families`: the base families (``ModelRecord/family``) of registered models the pool
    /// serves: its workers fetch a task's registered checkpoint and LoRAs into their cache.
    public var families: [String] = []
    /// `model_cache_gib`: how much local disk each worker's model cache may fill (least recently
    /// used files are evicted beyond it); nil: 100 GiB.
    public var modelCacheGiB: Double?
    /// `required_models`: registered models every worker fetches and verifies before it takes
    /// its first task (the pool's usual checkpoint), so a new worker never starts cold.
    public var requiredModels: [String] = []
    /// `runtime_url`: the base URL of the pool's HTTP runtime (`sdwebui`, `comfyui`), for stacks
    /// with several HTTP runtimes; nil takes `SDQ_RUNTIME_URL` (see ``RuntimeSelection``).
    public var runtimeURL: String?
    /// The pool's prompt policy (``PromptPolicy``), checked at submission.
    public var policy: PromptPolicy?

    /// The runtime as a kind (a pool's `runtime` is checked against ``RuntimeKind`` when the
    /// configuration is loaded; an unchecked spec reads as the emulator).
    public var runtimeKind: RuntimeKind { RuntimeKind(rawValue: runtime) ?? .emulator }

    public init(
        name: String, runtime: String, models: [String], runtimeURL: String? = nil, families: [String] = [],
        modelCacheGiB: Double? = nil, requiredModels: [String] = []
    ) {
        self.name = name
        self.runtime = runtime
        self.models = models
        self.runtimeURL = runtimeURL
        self.families = families
        self.modelCacheGiB = modelCacheGiB
        self.requiredModels = requiredModels
    }

    /// The bytes each worker's model cache may hold.
    public var modelCacheBytes: Int64 { Int64((modelCacheGiB ?? 100) * 1_073_741_824) }

    /// The checkpoint a task that names none gets: the first fixed model, else none (the
    /// runtime keeps what it has loaded).
    public var defaultModel: String { models.first ?? "" }

    /// Whether the pool serves registered models of `family`.
    public func serves(family: String) -> Bool { families.contains(family) }

    enum CodingKeys: String, CodingKey {
        case name, runtime, models, policy, families
        case runtimeURL = "runtime_url", modelCacheGiB = "model_cache_gib", requiredModels = "required_models"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        runtime = try c.decode(String.self, forKey: .runtime)
        models = try c.decodeIfPresent([String].self, forKey: .models) ?? []
        runtimeURL = try c.decodeIfPresent(String.self, forKey: .runtimeURL)
        policy = try c.decodeIfPresent(PromptPolicy.self, forKey: .policy)
        families = try c.decodeIfPresent([String].self, forKey: .families) ?? []
        modelCacheGiB = try c.decodeIfPresent(Double.self, forKey: .modelCacheGiB)
        requiredModels = try c.decodeIfPresent([String].self, forKey: .requiredModels) ?? []
    }
}

/// Request limits the API enforces.
public struct RequestLimits: Sendable, Equatable, Codable {
    public var maxWidth: Int = 2048
    public var maxHeight: Int = 2048
    public var maxSteps: Int = 150
    public var maxBatchSize: Int = 8
    public var maxPromptLength: Int = 8000
    /// Largest accepted request body in bytes.
    public var maxBodyBytes: Int = 1 << 20
    /// Largest object accepted through `POST /v1/uploads` (init images), in bytes.
    public var maxUploadBytes: Int = 16 << 20
    /// How long task records and results are kept, in seconds.
    public var taskTTLSeconds: Int = 7 * 24 * 3600

    public init() {}

    enum CodingKeys: String, CodingKey {
        case maxWidth = "max_width", maxHeight = "max_height", maxSteps = "max_steps"
        case maxBatchSize = "max_batch_size", maxPromptLength = "max_prompt_length"
        case maxBodyBytes = "max_body_bytes", taskTTLSeconds = "task_ttl_seconds", maxUploadBytes = "max_upload_bytes"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = RequestLimits.defaults
        maxWidth = try c.decodeIfPresent(Int.self, forKey: .maxWidth) ?? d.maxWidth
        maxHeight = try c.decodeIfPresent(Int.self, forKey: .maxHeight) ?? d.maxHeight
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? d.maxSteps
        maxBatchSize = try c.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? d.maxBatchSize
        maxPromptLength = try c.decodeIfPresent(Int.self, forKey: .maxPromptLength) ?? d.maxPromptLength
        maxBodyBytes = try c.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? d.maxBodyBytes
        taskTTLSeconds = try c.decodeIfPresent(Int.self, forKey: .taskTTLSeconds) ?? d.taskTTLSeconds
        maxUploadBytes = try c.decodeIfPresent(Int.self, forKey: .maxUploadBytes) ?? d.maxUploadBytes
    }

    static let defaults = RequestLimits()
}

/// Queue behaviour shared by every pool queue.
public struct QueueSettings: Sendable, Equatable, Codable {
    /// Receives after which a message is dead-lettered.
    public var maxReceiveCount: Int = 5
    /// Initial visibility of a task on a pool queue; workers extend it while they run.
    public var workerVisibilityTimeoutSeconds: Int = 60

    public init() {}

    /// ``workerVisibilityTimeoutSeconds`` as a duration.
    public var workerVisibilityTimeout: Duration { .seconds(workerVisibilityTimeoutSeconds) }

    enum CodingKeys: String, CodingKey {
        case maxReceiveCount = "max_receive_count"
        case workerVisibilityTimeoutSeconds = "worker_visibility_timeout_seconds"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxReceiveCount = try c.decodeIfPresent(Int.self, forKey: .maxReceiveCount) ?? 5
        workerVisibilityTimeoutSeconds =
            try c.decodeIfPresent(Int.self, forKey: .workerVisibilityTimeoutSeconds) ?? 60
    }
}

/// How webhooks are delivered.
public struct WebhookSettings: Sendable, Equatable, Codable {
    /// Waits before the 2nd, 3rd, … attempt of an event, in seconds: attempts = count + 1.
    /// The default retries for about 16 hours (5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h).
    public var retryDelaysSeconds: [Int] = [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800]
    /// Time allowed for one attempt (connect, send, answer).
    public var timeoutSeconds: Double = 10
    /// Least time between two `progress` events of one task.
    public var progressIntervalSeconds: Double = 5
    /// Attempts of a `running` or `progress` event (stale soon: retried briefly).
    public var transientEventAttempts: Int = 3

    public init() {}

    /// The most attempts a `completed` event gets.
    public var maxAttempts: Int { retryDelaysSeconds.count + 1 }

    /// The wait after failed attempt `attempt` (from 1).
    public func delay(after attempt: Int) -> Duration {
        let index = min(max(0, attempt - 1), max(0, retryDelaysSeconds.count - 1))
        return retryDelaysSeconds.isEmpty ? .zero : .seconds(retryDelaysSeconds[index])
    }

    enum CodingKeys: String, CodingKey {
        case retryDelaysSeconds = "retry_delays_seconds", timeoutSeconds = "timeout_seconds"
        case progressIntervalSeconds = "progress_interval_seconds", transientEventAttempts = "transient_event_attempts"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = WebhookSettings()
        retryDelaysSeconds = try c.decodeIfPresent([Int].self, forKey: .retryDelaysSeconds) ?? d.retryDelaysSeconds
        timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? d.timeoutSeconds
        progressIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .progressIntervalSeconds) ?? d.progressIntervalSeconds
        transientEventAttempts = try c.decodeIfPresent(Int.self, forKey: .transientEventAttempts) ?? d.transientEventAttempts
    }
}

/// `model_routing`: where a task naming a registered checkpoint goes among the pools of its
/// family. With `affinity` (the default) the dispatcher prefers a pool with the checkpoint
/// loaded, then cached, among those whose load is within `slack` tasks of the least loaded;
/// without it, the least loaded pool.
public struct ModelRoutingSettings: Sendable, Equatable, Codable {
    public var affinity = true
    /// How many more tasks a pool may have waiting than the least loaded one and still be
    /// preferred for its warm model.
    public var slack = 4

    public init(affinity: Bool = true, slack: Int = 4) {
        self.affinity = affinity
        self.slack = slack
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        affinity = try c.decodeIfPresent(Bool.self, forKey: .affinity) ?? true
        slack = try c.decodeIfPresent(Int.self, forKey: .slack) ?? 4
    }

    enum CodingKeys: String, CodingKey { case affinity, slack }
}

/// An invalid pool configuration file.
public struct ConfigurationError: CodedError {
    public let code = "invalid_configuration"
    public let message: String
    public let field: String?
    public init(message: String, field: String? = nil) {
        self.message = message
        self.field = field
    }
}

/// The pool configuration (`SDQ_POOLS_FILE`, YAML):
///
/// ```yaml
/// pools:
///   - name: default
///     runtime: emulator
///     models: [emulator-v1]          # fixed models, by the runtime's names
///     families: [sdxl]                # and/or registered models of these families
///     model_cache_gib: 200            # per-worker model cache on the node's disk
///     required_models: [sdxl-base]    # fetched and verified before the first task
/// limits: { max_width: 2048, max_height: 2048, max_steps: 150 }
/// queues: { max_receive_count: 5, worker_visibility_timeout_seconds: 60 }
/// webhooks: { retry_delays_seconds: [5, 30, 120], timeout_seconds: 10 }
/// fair_share: { lane_depth: 10, hold: 10000 }
/// ```
public struct PoolConfiguration: Sendable, Equatable, Codable {
    public var pools: [PoolSpec]
    public var limits: RequestLimits
    public var queues: QueueSettings
    public var webhooks: WebhookSettings = WebhookSettings()
    /// How the dispatcher shares each lane among tenants.
    public var fairShare: FairShareSettings = FairShareSettings()
    /// How the dispatcher places tasks that name registered models.
    public var modelRouting: ModelRoutingSettings = ModelRoutingSettings()

    /// The runtimes a pool may name.
    public static let knownRuntimes: Set<String> = Set(RuntimeKind.allCases.map(\.rawValue))
    /// The model the built-in emulator serves.
    public static let emulatorModel = "emulator-v1"

    public init(pools: [PoolSpec], limits: RequestLimits = RequestLimits(), queues: QueueSettings = QueueSettings())
        throws(ConfigurationError)
    {
        self.pools = pools
        self.limits = limits
        self.queues = queues
        try validate()
    }

    /// The model name of a pool built from `SDQ_RUNTIME` alone (no pools file) on an HTTP runtime:
    /// "whatever checkpoint the runtime has loaded". Tasks that name no model get it, and the
    /// runtime is then never asked to switch.
    public static let runtimeDefaultModel = "runtime-default"

    /// The built-in pool `default` on the emulator: its own model, and registered models of every
    /// known family (the emulator pretends to run them), so `sdq models add` can be tried at once.
    public static var emulatorPool: PoolSpec {
        PoolSpec(name: "default", runtime: "emulator", models: [emulatorModel], families: ModelRecord.knownFamilies)
    }

    /// The default when no file is given: one pool `default` on the emulator.
    public static var builtIn: PoolConfiguration {
        // Statically valid.
        try! PoolConfiguration(pools: [emulatorPool])
    }

    /// The default when no file is given, with `SDQ_RUNTIME`/`SDQ_RUNTIME_URL` applied: one pool
    /// `default` on that runtime (the emulator when unset).
    public static func builtIn(runtime: String?, runtimeURL: String?) throws(ConfigurationError) -> PoolConfiguration {
        let runtime = runtime ?? "emulator"
        guard knownRuntimes.contains(runtime) else {
            throw ConfigurationError(
                message: "unknown runtime \(runtime) (one of \(knownRuntimes.sorted().joined(separator: ", ")))", field: "SDQ_RUNTIME")
        }
        if runtime == "emulator", let runtimeURL {
            throw ConfigurationError(
                message: "SDQ_RUNTIME_URL=\(runtimeURL) is set but the default pool runs the built-in emulator: "
                    + "set SDQ_RUNTIME (sdwebui or comfyui) or unset SDQ_RUNTIME_URL",
                field: "SDQ_RUNTIME_URL")
        }
        if runtime == "emulator" { return try PoolConfiguration(pools: [emulatorPool]) }
        return try PoolConfiguration(pools: [PoolSpec(name: "default", runtime: runtime, models: [runtimeDefaultModel], runtimeURL: runtimeURL)])
    }

    enum CodingKeys: String, CodingKey {
        case pools, limits, queues, webhooks
        case fairShare = "fair_share"
        case modelRouting = "model_routing"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        pools = try c.decode([PoolSpec].self, forKey: .pools)
        limits = try c.decodeIfPresent(RequestLimits.self, forKey: .limits) ?? RequestLimits()
        queues = try c.decodeIfPresent(QueueSettings.self, forKey: .queues) ?? QueueSettings()
        webhooks = try c.decodeIfPresent(WebhookSettings.self, forKey: .webhooks) ?? WebhookSettings()
        fairShare = try c.decodeIfPresent(FairShareSettings.self, forKey: .fairShare) ?? FairShareSettings()
        modelRouting = try c.decodeIfPresent(ModelRoutingSettings.self, forKey: .modelRouting) ?? ModelRoutingSettings()
    }

    /// Parses YAML text.
    public static func parse(yaml: String) throws(ConfigurationError) -> PoolConfiguration {
        let config: PoolConfiguration
        do {
            config = try YAMLDecoder().decode(PoolConfiguration.self, from: yaml)
        } catch {
            throw ConfigurationError(message: "pool configuration is not valid: \(error)")
        }
        try config.validate()
        return config
    }

    /// The pools of `configuration`: its `SDQ_POOLS_FILE`, or without one the built-in pool on
    /// `SDQ_RUNTIME`/`SDQ_RUNTIME_URL`.
    public static func load(for configuration: SDQConfiguration) throws(ConfigurationError) -> PoolConfiguration {
        if let path = configuration.poolsFile, !path.isEmpty { return try load(path: path) }
        return try builtIn(runtime: configuration.runtime, runtimeURL: configuration.runtimeURL)
    }

    /// Loads `path`, or the built-in configuration when `path` is nil.
    public static func load(path: String?) throws(ConfigurationError) -> PoolConfiguration {
        guard let path, !path.isEmpty else { return builtIn }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else { throw ConfigurationError(message: "cannot read pool configuration at \(path)", field: "SDQ_POOLS_FILE") }
        return try parse(yaml: text)
    }

    /// The pool with this name.
    public func pool(named name: String) -> PoolSpec? { pools.first { $0.name == name } }

    /// The first pool serving `model` (model affinity).
    public func pool(servingModel model: String) -> PoolSpec? { pools.first { $0.models.contains(model) } }

    /// Every pool serving registered models of `family`, in configuration order.
    public func pools(servingFamily family: String) -> [PoolSpec] { pools.filter { $0.serves(family: family) } }

    /// Every pool serving `model`, in configuration order.
    public func pools(servingModel model: String) -> [PoolSpec] { pools.filter { $0.models.contains(model) } }

    /// The pool used when a request names neither pool nor model.
    public var defaultPool: PoolSpec { pool(named: "default") ?? pools[0] }

    private func validate() throws(ConfigurationError) {
        guard !pools.isEmpty else { throw ConfigurationError(message: "at least one pool is required", field: "pools") }
        var seen = Set<String>()
        for (index, pool) in pools.enumerated() {
            let field = "pools[\(index)]"
            let allowed = pool.name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
            guard !pool.name.isEmpty, pool.name.count <= 40, allowed else {
                throw ConfigurationError(message: "pool name must be 1-40 of a-z, 0-9, -", field: "\(field).name")
            }
            guard seen.insert(pool.name).inserted else {
                throw ConfigurationError(message: "duplicate pool \(pool.name)", field: "\(field).name")
            }
            guard Self.knownRuntimes.contains(pool.runtime) else {
                throw ConfigurationError(message: "unknown runtime \(pool.runtime)", field: "\(field).runtime")
            }
            guard !pool.models.isEmpty || !pool.families.isEmpty else {
                throw ConfigurationError(message: "a pool serves at least one model or family", field: "\(field).models")
            }
            for (position, family) in pool.families.enumerated() {
                if let problem = ModelRecord.validateFamily(family) {
                    throw ConfigurationError(message: problem, field: "\(field).families[\(position)]")
                }
            }
            if let cache = pool.modelCacheGiB, !(cache > 0 && cache <= 100_000) {
                throw ConfigurationError(message: "model_cache_gib must be in (0, 100000]", field: "\(field).model_cache_gib")
            }
            for (position, model) in pool.requiredModels.enumerated() {
                if let problem = ModelRecord.validateName(model) {
                    throw ConfigurationError(message: problem, field: "\(field).required_models[\(position)]")
                }
            }
            if let url = pool.runtimeURL {
                guard pool.runtime != "emulator" else {
                    throw ConfigurationError(
                        message: "pool \(pool.name) runs the built-in emulator, which has no URL", field: "\(field).runtime_url")
                }
                guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                    throw ConfigurationError(message: "not an http(s) URL: \(url)", field: "\(field).runtime_url")
                }
            }
        }
        guard webhooks.retryDelaysSeconds.allSatisfy({ $0 >= 0 }), webhooks.retryDelaysSeconds.count <= 30 else {
            throw ConfigurationError(message: "retry delays are 0 to 30 non-negative seconds", field: "webhooks.retry_delays_seconds")
        }
        guard webhooks.timeoutSeconds > 0, webhooks.timeoutSeconds <= 60 else {
            throw ConfigurationError(message: "timeout_seconds must be in (0, 60]", field: "webhooks.timeout_seconds")
        }
        try fairShare.validate()
        guard (0...1000).contains(modelRouting.slack) else {
            throw ConfigurationError(message: "slack must be 0...1000 tasks", field: "model_routing.slack")
        }
    }
}
