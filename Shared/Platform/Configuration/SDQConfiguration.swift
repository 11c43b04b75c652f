import Foundation
import Logging
import SDQAWS

/// The configuration every service reads from its environment (docs/DESIGN.md's fixed names).
/// Command-line flags of the same meaning override these values.
public struct SDQConfiguration: Sendable {
    /// `embedded` or `aws`.
    public enum TransportKind: String, Sendable { case embedded, aws }

    /// `SDQ_TRANSPORT`.
    public var transport: TransportKind = .embedded
    /// `SDQ_DATA_DIR`: the embedded database and object folder.
    public var dataDirectory: String = "./.sdq"
    /// `SDQ_STACK`: prefix of every resource name.
    public var stack: String = "sdq"
    /// `SDQ_POOLS_FILE`: YAML pool configuration; nil means the built-in single emulator pool.
    public var poolsFile: String?
    /// `SDQ_RUNTIME`: the runtime of the default pool when no pools file is given (the emulator
    /// when unset); with a pools file it must agree with the pool's `runtime`
    /// (``RuntimeSelection``). Nil when unset.
    public var runtime: String?
    /// `SDQ_RUNTIME_URL`: the runtime's base URL (sdwebui, comfyui).
    public var runtimeURL: String?
    /// `SDQ_RUNTIME_QUEUE_AHEAD`: whether the worker sends the next generation while one runs, so
    /// it waits in the runtime's own queue (1, the default) or only once the runtime is idle (0:
    /// for a runtime fork that mishandles concurrent requests).
    public var runtimeQueueAhead = true
    /// `SDQ_HTTP_PORT`.
    public var httpPort: Int = 8080
    /// `SDQ_API_KEYS`: accepted API keys (the first is the CLI's default key); empty means open
    /// unless `SDQ_API_KEYS_FILE` names a key file. The API's tenants come from ``APIKeyring``.
    public var apiKeys: [String] = []
    /// `SDQ_WEBHOOK_ALLOW_PRIVATE`.
    public var webhookAllowPrivate: Bool = false
    /// `SDQ_FETCH_ALLOW_PRIVATE`: `true` lets workers fetch input URLs (reference-format init
    /// images) from loopback and private addresses (tests, local). Default `false`.
    public var fetchAllowPrivate: Bool = false
    /// `LOG_LEVEL`.
    public var logLevel: Logger.Level = .info
    /// `SDQ_LOG_FORMAT`: `json` or `text`; nil picks text on a terminal and JSON otherwise.
    public var logFormat: String?
    /// `SDQ_POOL`: the pool an inference service serves.
    public var pool: String = "default"
    /// `SDQ_HTTP_HOST`: the address the plain-HTTP API listens on.
    public var httpHost: String = "0.0.0.0"
    /// `SDQ_PUBLIC_URL`: the API's public base URL, for absolute links (status URLs in webhooks,
    /// object links); nil: links follow the request.
    public var publicURL: String?
    /// `SDQ_MODEL_DIR`: the runtime's model folder, shared with the runtime's container, where
    /// the inference service caches registered models; nil: `<SDQ_DATA_DIR>/models` on the
    /// embedded transport, and no cache on AWS (tasks naming registered models then fail with
    /// `model_cache_unconfigured`).
    public var modelDirectory: String?
    /// The model folder in effect (``modelDirectory``, or the embedded default).
    public var effectiveModelDirectory: String? {
        modelDirectory ?? (transport == .embedded ? dataDirectory + "/models" : nil)
    }
    /// `SDQ_EMULATOR_STEP_MS`: the in-process emulator's time per sampling step.
    public var emulatorStepMilliseconds: Int = 50
    /// `SDQ_PREVIEW_INTERVAL_MS`: least time between two live previews a worker stores for a
    /// running task (one object write and one record update each); 0 turns previews off.
    public var previewIntervalMilliseconds: Int = 1000
    /// ``previewIntervalMilliseconds`` as a duration; nil when previews are off.
    public var previewInterval: Duration? { previewIntervalMilliseconds > 0 ? .milliseconds(previewIntervalMilliseconds) : nil }
    /// `SDQ_SERVER`: the API the `sdq` client commands talk to; nil: this machine's `httpPort`.
    public var server: String?
    /// `SDQ_HEALTH_FILE`: a file a port-less service keeps fresh while it runs (container health).
    public var healthFile: String?
    /// `SDQ_TRUSTED_PROXIES`: address ranges whose forwarded headers are believed, as written.
    public var trustedProxies: String = ""

    public init() {}

    /// Reads the configuration from `environment` (the process environment by default).
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> SDQConfiguration {
        var config = SDQConfiguration()
        func value(_ name: String) -> String? {
            guard let raw = environment[name]?.trimmingWhitespace(), !raw.isEmpty else { return nil }
            return raw
        }
        if let raw = value("SDQ_TRANSPORT") {
            guard let kind = TransportKind(rawValue: raw.lowercased()) else {
                throw ConfigurationError(message: "must be embedded or aws, not \(raw)", field: "SDQ_TRANSPORT")
            }
            config.transport = kind
        }
        if let raw = value("SDQ_DATA_DIR") { config.dataDirectory = raw }
        config.modelDirectory = value("SDQ_MODEL_DIR")
        if let raw = value("SDQ_STACK") { config.stack = raw }
        config.poolsFile = value("SDQ_POOLS_FILE")
        if let raw = value("SDQ_RUNTIME") { config.runtime = raw.lowercased() }
        config.runtimeURL = value("SDQ_RUNTIME_URL")
        if let raw = value("SDQ_RUNTIME_QUEUE_AHEAD") {
            guard raw == "0" || raw == "1" else {
                throw ConfigurationError(message: "must be 0 or 1, not \(raw)", field: "SDQ_RUNTIME_QUEUE_AHEAD")
            }
            config.runtimeQueueAhead = raw == "1"
        }
        if let raw = value("SDQ_HTTP_PORT") {
            guard let port = Int(raw), (0...65535).contains(port) else {
                throw ConfigurationError(message: "not a port number: \(raw)", field: "SDQ_HTTP_PORT")
            }
            config.httpPort = port
        }
        if let raw = environment["SDQ_API_KEYS"], !raw.isEmpty {
            // Set but listing nothing (" , ") is refused rather than leaving the API open.
            config.apiKeys = try APIKeyring.keys(inList: raw)
        }
        if let raw = value("SDQ_WEBHOOK_ALLOW_PRIVATE") {
            config.webhookAllowPrivate = ["1", "true", "yes"].contains(raw.lowercased())
        }
        if let raw = value("SDQ_FETCH_ALLOW_PRIVATE") {
            config.fetchAllowPrivate = ["1", "true", "yes"].contains(raw.lowercased())
        }
        if let raw = value("LOG_LEVEL") {
            guard let level = Logger.Level(rawValue: raw.lowercased()) else {
                throw ConfigurationError(message: "unknown log level \(raw)", field: "LOG_LEVEL")
            }
            config.logLevel = level
        }
        config.logFormat = value("SDQ_LOG_FORMAT")?.lowercased()
        if let raw = value("SDQ_POOL") { config.pool = raw }
        if let raw = value("SDQ_HTTP_HOST") { config.httpHost = raw }
        config.publicURL = value("SDQ_PUBLIC_URL")
        if let raw = value("SDQ_EMULATOR_STEP_MS") {
            guard let step = Int(raw), step >= 0 else {
                throw ConfigurationError(message: "not a number of milliseconds: \(raw)", field: "SDQ_EMULATOR_STEP_MS")
            }
            config.emulatorStepMilliseconds = step
        }
        if let raw = value("SDQ_PREVIEW_INTERVAL_MS") {
            guard let interval = Int(raw), interval == 0 || interval >= 100 else {
                throw ConfigurationError(message: "0 (no previews) or at least 100 milliseconds, not \(raw)", field: "SDQ_PREVIEW_INTERVAL_MS")
            }
            config.previewIntervalMilliseconds = interval
        }
        config.server = value("SDQ_SERVER")
        config.healthFile = value("SDQ_HEALTH_FILE")
        config.trustedProxies = value("SDQ_TRUSTED_PROXIES") ?? ""
        return config
    }

    /// The resource names of ``stack``.
    public var names: ResourceNames { ResourceNames(stack: stack) }
}
