import Foundation
import SDQPlatform

/// How an inference worker behaves.
public struct InferenceConfiguration: Sendable {
    /// The pool whose queue the worker consumes.
    public var pool: String
    /// Identity reported in results (`worker`).
    public var workerID: String
    /// Visibility granted on receive and on each extension.
    public var visibilityTimeout: Duration
    /// How often held messages are extended (a third of the visibility timeout by default).
    public var heartbeatInterval: Duration
    /// Long-poll wait of one receive.
    public var receiveWait: Duration
    /// Tasks received and prepared ahead of the one running (the GPU never waits for a receive).
    public var prefetch: Int
    /// Uploads that may run at once behind the GPU.
    public var maxUploadsInFlight: Int
    /// Minimum progress change written to the task record.
    public var progressGranularity: Double
    /// Least time between two writes of a running task's record (progress, or a read that looks
    /// for a cancel when progress did not change): each is one store request.
    public var progressInterval: Duration
    /// Least time between two live previews stored for the running task (nil, the default
    /// here: none are asked for; the services pass `SDQ_PREVIEW_INTERVAL_MS`, 1 s unless set). Each is one object write (`previews/{task}/preview.{ext}`, overwritten) and one
    /// record update, off the GPU's path.
    public var previewInterval: Duration?
    /// Which input URLs the worker may fetch (`SDQ_FETCH_ALLOW_PRIVATE` opens private addresses).
    public var fetchPolicy: OutboundURLPolicy
    /// How often the worker writes its ``WorkerHeartbeat`` to the task store (one write each);
    /// a heartbeat counts for three of these.
    public var fleetHeartbeatInterval: Duration = .seconds(10)
    /// The runtime's model folder (`SDQ_MODEL_DIR`), where registered models are cached
    /// (``ModelCache``); nil: tasks that need registered models fail (`model_cache_unconfigured`).
    public var modelDirectory: URL?
    /// How often a worker waiting for its pool's required models tries again.
    public var requiredModelRetry: Duration = .seconds(10)

    public init(
        pool: String = "default", workerID: String = InferenceConfiguration.defaultWorkerID(),
        visibilityTimeout: Duration = .seconds(60), heartbeatInterval: Duration? = nil,
        receiveWait: Duration = .seconds(20), prefetch: Int = 1, maxUploadsInFlight: Int = 4,
        progressGranularity: Double = 0.05, progressInterval: Duration = .seconds(2),
        fetchPolicy: OutboundURLPolicy = OutboundURLPolicy(), previewInterval: Duration? = nil, modelDirectory: URL? = nil
    ) {
        self.modelDirectory = modelDirectory
        self.previewInterval = previewInterval
        self.progressInterval = progressInterval
        self.fetchPolicy = fetchPolicy
        self.pool = pool
        self.workerID = workerID
        self.visibilityTimeout = visibilityTimeout
        self.heartbeatInterval = heartbeatInterval ?? visibilityTimeout / 3
        self.receiveWait = receiveWait
        self.prefetch = max(1, prefetch)
        self.maxUploadsInFlight = max(1, maxUploadsInFlight)
        self.progressGranularity = progressGranularity
    }

    /// `hostname-pid-random`, unique per process.
    public static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(suffix)"
    }
}
