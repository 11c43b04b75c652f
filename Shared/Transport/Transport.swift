import Foundation
import SDQCore

/// A message as a consumer receives it from a ``MessageQueue``.
public struct QueueMessage: Sendable, Equatable {
    /// The transport's id of the message (stable across receives).
    public var messageID: String
    /// The body: base64 of a serialized protobuf message (see ``MessageCodec``).
    public var body: String
    /// String message attributes (routing and trace data).
    public var attributes: [String: String]
    /// Handle for ``MessageQueue/delete(receiptHandle:)`` and visibility changes; changes on every receive.
    public var receiptHandle: String
    /// How many times the message has been received, this receive included.
    public var receiveCount: Int
    /// When the message was first sent, epoch milliseconds.
    public var sentAtMillis: Int64

    public init(
        messageID: String, body: String, attributes: [String: String], receiptHandle: String,
        receiveCount: Int, sentAtMillis: Int64
    ) {
        self.messageID = messageID
        self.body = body
        self.attributes = attributes
        self.receiptHandle = receiptHandle
        self.receiveCount = receiveCount
        self.sentAtMillis = sentAtMillis
    }
}

/// Approximate queue depth, as SQS reports it.
public struct QueueDepth: Sendable, Equatable {
    /// Messages ready to be received.
    public var visible: Int
    /// Messages received and not yet deleted (invisible).
    public var inFlight: Int
    public init(visible: Int, inFlight: Int) {
        self.visible = visible
        self.inFlight = inFlight
    }
}

/// A queue with SQS semantics: at-least-once delivery, a visibility timeout per receive, a receive
/// count, and redrive to a dead-letter queue after too many receives.
public protocol MessageQueue: Sendable {
    /// The queue's name (`SDQ_STACK`-prefixed).
    var name: String { get }
    /// Sends one message, invisible to receivers for `delay` (SQS `DelaySeconds`: whole seconds,
    /// at most 15 minutes; longer waits are the caller's, see ``MessageQueue/maxDelay``).
    func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError)
    /// Receives up to `maxMessages`, waiting up to `wait` for the first to arrive (long poll).
    /// Each received message stays invisible for `visibilityTimeout` (the queue's default when nil).
    func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError)
        -> [QueueMessage]
    /// Deletes a received message; a stale receipt handle is ignored, as SQS does.
    func delete(receiptHandle: String) async throws(TransportError)
    /// Deletes several received messages, in as few requests as the transport allows (SQS: ten
    /// per `DeleteMessageBatch`); stale receipt handles are ignored.
    func delete(receiptHandles: [String]) async throws(TransportError)
    /// Makes a received message invisible for `timeout` from now (zero: visible at once).
    func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError)
    /// Approximate number of visible and in-flight messages.
    func depth() async throws(TransportError) -> QueueDepth
    /// Sends several messages, visible at once, in as few requests as the transport allows (SQS:
    /// ten per `SendMessageBatch`); returns, in order, the error of each message that was not
    /// sent (nil: sent).
    func send(batch: [OutgoingMessage]) async -> [TransportError?]
}

/// A message to send: its body and string attributes.
public struct OutgoingMessage: Sendable, Equatable {
    public var body: String
    public var attributes: [String: String]

    public init(body: String, attributes: [String: String]) {
        self.body = body
        self.attributes = attributes
    }
}

extension MessageQueue {
    public func delete(receiptHandles: [String]) async throws(TransportError) {
        for receipt in receiptHandles { try await delete(receiptHandle: receipt) }
    }

    /// Sends one message, visible at once.
    public func send(body: String, attributes: [String: String]) async throws(TransportError) {
        try await send(body: body, attributes: attributes, delay: .zero)
    }

    /// Sends several messages, one by one; the error of each that was not sent (nil: sent).
    public func send(batch: [OutgoingMessage]) async -> [TransportError?] {
        var errors: [TransportError?] = []
        for message in batch {
            do throws(TransportError) {
                try await send(body: message.body, attributes: message.attributes, delay: .zero)
                errors.append(nil)
            } catch {
                errors.append(error)
            }
        }
        return errors
    }

    /// The longest delay a send may ask for (SQS: 900 seconds).
    public static var maxDelay: Duration { .seconds(900) }
}

/// A publish/subscribe topic with SNS semantics: fan-out to subscribed queues, each subscription
/// optionally filtered by a ``FilterPolicy`` on message attributes; raw message delivery.
public protocol Topic: Sendable {
    /// The topic's name.
    var name: String { get }
    /// Publishes one message to every subscription whose filter matches its attributes.
    func publish(body: String, attributes: [String: String]) async throws(TransportError)
}

/// An object as stored.
public struct StoredObject: Sendable, Equatable {
    public var key: String
    public var data: Data
    public var contentType: String
    public init(key: String, data: Data, contentType: String) {
        self.key = key
        self.data = data
        self.contentType = contentType
    }
}

/// An object store with S3 semantics for what sdq uses: whole-object put, get, head and delete.
public protocol ObjectStore: Sendable {
    /// The bucket this store writes to.
    var bucket: String { get }
    /// Writes (or overwrites) an object.
    func put(key: String, data: Data, contentType: String) async throws(TransportError)
    /// Reads an object; nil when absent.
    func get(key: String) async throws(TransportError) -> StoredObject?
    /// Whether an object exists.
    func exists(key: String) async throws(TransportError) -> Bool
    /// Deletes an object; absent objects are fine.
    func delete(key: String) async throws(TransportError)
    /// A URL a client can download the object from without credentials (S3 presigned GET), or nil
    /// when the store has none and the API serves objects itself (embedded).
    func presignedGetURL(key: String, expiresIn: Duration) async throws(TransportError) -> String?
    /// A URL a client can upload the object to with `PUT` (S3 presigned PUT), or nil when the API
    /// accepts uploads itself (embedded). `headers` are signed: the upload must send exactly them.
    func presignedPutURL(key: String, expiresIn: Duration, headers: [(String, String)]) async throws(TransportError) -> String?
    /// Moves the file at `file` into place as a new object; false (and the file left) when the
    /// key exists already. Nil when the store takes uploads only through presigned URLs (S3).
    func createFromFile(key: String, file: URL, contentType: String) async throws(TransportError) -> Bool?
    /// The object's size in bytes, or nil when it does not exist.
    func size(key: String) async throws(TransportError) -> Int64?
    /// `length` bytes of the object from `offset` (fewer at its end, none past it), or nil when
    /// it does not exist: how large objects (model files) are read a piece at a time.
    func read(key: String, offset: Int64, length: Int) async throws(TransportError) -> Data?
    /// Stores the file at `file` as object `key`, never holding it in memory whole (multipart
    /// upload on S3); the object appears whole or not at all, and the file is left in place.
    func putFile(key: String, file: URL, contentType: String) async throws(TransportError)
}

extension ObjectStore {
    public func presignedGetURL(key: String, expiresIn: Duration) async throws(TransportError) -> String? { nil }
    public func presignedPutURL(key: String, expiresIn: Duration, headers: [(String, String)]) async throws(TransportError) -> String? {
        nil
    }
    public func createFromFile(key: String, file: URL, contentType: String) async throws(TransportError) -> Bool? { nil }
}

/// The task records (DynamoDB on AWS). Every state change is a conditional write, so duplicate
/// deliveries and races between services cannot produce two terminal states.
public protocol TaskStore: Sendable {
    /// Stores a new record; with an idempotency key that is already taken, returns the existing
    /// one. A record with an ``TaskRecord/inFlightSlot`` takes a slot of that tenant's in-flight
    /// count in the same atomic write, and is refused (``CreateOutcome/inFlightLimitReached(limit:)``,
    /// nothing stored) when `inFlightLimit` slots are taken; a repeat of an existing task takes none.
    func create(_ record: TaskRecord, inFlightLimit: Int?) async throws(TransportError) -> CreateOutcome
    /// Takes one submission from `tenant`'s rate bucket at `now` (epoch milliseconds) with one
    /// conditional write on the tenant's quota record, shared by every API instance.
    func takeSubmission(tenant: String, rate: SubmissionRate, now: Int64) async throws(TransportError) -> RateDecision
    /// The tenant's tasks in flight that hold slots (queued, dispatched or running).
    func inFlight(tenant: String) async throws(TransportError) -> Int
    /// Stores an audit record (kept until its ``AuditRecord/expiresAt``).
    func appendAudit(_ record: AuditRecord) async throws(TransportError)
    /// A page of audit records, newest first, from an index on time (never a scan); `more` when
    /// another page follows.
    func audit(_ query: AuditQuery) async throws(TransportError) -> (records: [AuditRecord], more: Bool)
    /// Writes (replaces) a worker's heartbeat.
    func recordHeartbeat(_ heartbeat: WorkerHeartbeat) async throws(TransportError)
    /// Workers' heartbeats by pool then worker (one pool's with `pool`): those still live, and
    /// those whose last heartbeat expired within the last `goneWithin` milliseconds (the store
    /// keeps a record ``WorkerHeartbeat/retainedFor`` after it expired, for churn).
    func heartbeats(pool: String?, goneWithin: Int64) async throws(TransportError) -> [WorkerHeartbeat]
    /// Stores a model's registration (``ModelRecord``); false, and nothing written, when one of
    /// that name exists and `replace` is false.
    func putModel(_ record: ModelRecord, replace: Bool) async throws(TransportError) -> Bool
    /// Every registered model, by name (one query on an index, never a scan).
    func models() async throws(TransportError) -> [ModelRecord]
    /// The registered model with this name, or nil.
    func model(named name: String) async throws(TransportError) -> ModelRecord?
    /// Removes a model's registration; false when there was none.
    func deleteModel(named name: String) async throws(TransportError) -> Bool
    /// Reads a record; nil when absent or expired.
    func get(id: String) async throws(TransportError) -> TaskRecord?
    /// Applies one lifecycle event atomically, if its ``TaskLifecycle`` transition permits it on
    /// the current record: `.applied` with the new record, `.conflict` with the current one. How
    /// services change a task.
    func apply(_ event: TaskEvent, to id: String) async throws(TransportError) -> UpdateOutcome
    /// Applies `mutate` if and only if the record's current status is in `allowed`, atomically.
    /// A low-level write for tests and tools: services change tasks through ``apply(_:to:)``.
    func update(
        id: String, ifStatusIn allowed: Set<TaskStatus>,
        _ mutate: @Sendable (inout TaskRecord) -> Void
    ) async throws(TransportError) -> UpdateOutcome
    /// One page of a tenant's tasks, newest first: a query on an index of (tenant, submitted
    /// time), never a scan, so its cost does not grow with the table.
    func list(_ query: TaskListQuery) async throws(TransportError) -> TaskPage
    /// A counter that every change of task `id` made through this store object advances (in this
    /// process); 0 where the store cannot tell (AWS).
    func changeGeneration(of id: String) async -> UInt64
    /// Waits until task `id` changes after `generation` (as this process sees it) or `timeout`
    /// passes, whichever is first. Callers read the record again either way: a store that cannot
    /// see changes (AWS, or a change made by another process) just waits out the timeout.
    func waitForChange(of id: String, since generation: UInt64, timeout: Duration) async
}

extension TaskStore {
    /// The workers whose heartbeat has not expired, by pool then worker; one pool's with `pool`.
    public func heartbeats(pool: String?) async throws(TransportError) -> [WorkerHeartbeat] {
        try await heartbeats(pool: pool, goneWithin: 0)
    }

    /// Stores a new record without an in-flight limit (``create(_:inFlightLimit:)``).
    public func create(_ record: TaskRecord) async throws(TransportError) -> CreateOutcome {
        try await create(record, inFlightLimit: nil)
    }

    public func changeGeneration(of id: String) async -> UInt64 { 0 }
    public func waitForChange(of id: String, since generation: UInt64, timeout: Duration) async {
        try? await Task.sleep(for: timeout)
    }
}

/// One transport: where the services find their queues, topics, objects and task records.
public protocol Transport: Sendable {
    /// The queue with this name (it must have been provisioned).
    func queue(named name: String) -> any MessageQueue
    /// The topic with this name.
    func topic(named name: String) -> any Topic
    /// The object store of the stack's bucket.
    var objects: any ObjectStore { get }
    /// The task records.
    var tasks: any TaskStore { get }
    /// Creates queues, dead-letter queues, topics and subscriptions; idempotent.
    func provision(_ topology: Topology) async throws(TransportError)
    /// Deletes objects under `prefixes` older than `objectTTL` and expired records, where the
    /// store has no lifecycle of its own; returns the objects deleted. AWS: nothing to do (the S3
    /// lifecycle rule and DynamoDB TTL set by `sdq aws init` expire them).
    @discardableResult
    func sweepExpired(objectTTL: Duration, prefixes: [String]) async throws(TransportError) -> Int
    /// A secret kept by the transport itself under `name` (32 random bytes, made on first use),
    /// for a store that serves its own objects (embedded: the key of the API's object URLs); nil
    /// where the store presigns its own URLs (S3).
    func localSecret(named name: String) async throws(TransportError) -> Data?
    /// Where the API streams upload bodies before storing them, when it takes uploads itself
    /// (embedded); nil where clients upload to presigned URLs (S3).
    var uploadStagingDirectory: URL? { get }
    /// Releases what the transport holds (the embedded database's connection); AWS: nothing.
    func close() async
}

extension Transport {
    @discardableResult
    public func sweepExpired(objectTTL: Duration, prefixes: [String]) async throws(TransportError) -> Int { 0 }
    public func localSecret(named name: String) async throws(TransportError) -> Data? { nil }
    public var uploadStagingDirectory: URL? { nil }
    public func close() async {}
}
