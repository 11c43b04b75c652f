/// The names of every resource of one stack. Every AWS resource name starts with `SDQ_STACK`.
public struct ResourceNames: Sendable, Equatable {
    /// The `SDQ_STACK` prefix.
    public let stack: String

    public init(stack: String) { self.stack = stack }

    /// SNS topic the API publishes every accepted task to.
    public var tasksTopic: String { "\(stack)-tasks" }
    /// SQS queue the dispatcher consumes (subscribed to ``tasksTopic``).
    public var dispatchQueue: String { "\(stack)-dispatch" }
    /// Queue a worker pool consumes.
    public func poolQueue(_ pool: String) -> String { "\(stack)-pool-\(pool)" }
    /// The high-priority lane of a pool: its workers drain it before ``poolQueue(_:)``. (A name no
    /// pool queue can take: pool queues start with `{stack}-pool-`.)
    public func highPriorityQueue(_ pool: String) -> String { "\(stack)-high-\(pool)" }
    /// Every queue a pool's workers consume, the high-priority lane first.
    public func workerQueues(_ pool: String) -> [String] { [highPriorityQueue(pool), poolQueue(pool)] }
    /// Queue of webhook deliveries (consumed by the result-writer; retries are delayed sends).
    public var webhooksQueue: String { "\(stack)-webhooks" }
    /// Queue the result-writer consumes.
    public var resultsQueue: String { "\(stack)-results" }
    /// SNS topic of task notifications (finished tasks).
    public var notificationsTopic: String { "\(stack)-notifications" }
    /// Bucket of inputs, images and manifests.
    public var bucket: String { "\(stack)-data" }
    /// Table of task records.
    public var tasksTable: String { "\(stack)-tasks" }
    /// The dead-letter queue paired with `queue`.
    public func deadLetterQueue(of queue: String) -> String { "\(queue)-dlq" }
}

/// One queue to provision.
public struct QueueSpec: Sendable, Equatable {
    public var name: String
    /// Default visibility timeout of a receive.
    public var visibilityTimeout: Duration
    /// Receives after which a message moves to ``deadLetterQueue``.
    public var maxReceiveCount: Int
    /// The dead-letter queue, if redrive is on.
    public var deadLetterQueue: String?

    public init(name: String, visibilityTimeout: Duration, maxReceiveCount: Int, deadLetterQueue: String?) {
        self.name = name
        self.visibilityTimeout = visibilityTimeout
        self.maxReceiveCount = maxReceiveCount
        self.deadLetterQueue = deadLetterQueue
    }
}

/// One topic subscription (raw message delivery to a queue).
public struct SubscriptionSpec: Sendable, Equatable {
    public var topic: String
    public var queue: String
    public var filterPolicy: FilterPolicy?

    public init(topic: String, queue: String, filterPolicy: FilterPolicy? = nil) {
        self.topic = topic
        self.queue = queue
        self.filterPolicy = filterPolicy
    }
}

/// The bucket and table of a stack (the embedded transport keeps both in its data directory).
public struct StorageSpec: Sendable, Equatable {
    public var bucket: String
    public var table: String
    /// Objects and records expire after this many days (S3 lifecycle, DynamoDB TTL).
    public var expirationDays: Int
    /// Key prefixes the lifecycle rule expires.
    public var expiringPrefixes: [String]

    public init(bucket: String, table: String, expirationDays: Int, expiringPrefixes: [String] = ["inputs/", "outputs/", "previews/", "results/", "uploads/"]) {
        self.bucket = bucket
        self.table = table
        self.expirationDays = expirationDays
        self.expiringPrefixes = expiringPrefixes
    }
}

/// Everything a stack needs: the same description provisions the embedded store, LocalStack,
/// moto and AWS (`sdq aws init`).
public struct Topology: Sendable, Equatable {
    public var queues: [QueueSpec]
    public var topics: [String]
    public var subscriptions: [SubscriptionSpec]
    public var storage: StorageSpec?

    public init(queues: [QueueSpec], topics: [String], subscriptions: [SubscriptionSpec], storage: StorageSpec? = nil) {
        self.queues = queues
        self.topics = topics
        self.subscriptions = subscriptions
        self.storage = storage
    }
}
