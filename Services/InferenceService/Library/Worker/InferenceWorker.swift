import Foundation
import Logging
import SDQMessages
import SDQPlatform
import ServiceLifecycle

/// The GPU worker: consumes its pool's queue and keeps the runtime busy.
///
/// The pipeline is one state machine (``WorkerMachine``) run by a ``WorkerDriver``; this type
/// performs its actions (``WorkerEffects``). Work overlaps so the GPU never waits on the network:
/// the next message is received and its inputs fetched while the current task runs (`prefetch`
/// ahead), the next job waits in the runtime's own queue (`queueAhead`), and images are stored,
/// the `TaskResult` sent and the message deleted behind it (`maxUploadsInFlight` at once). Every
/// held message's visibility is extended on its own heartbeat. On graceful shutdown (SIGTERM:
/// Spot interruption, scale-in) the worker stops taking work, stops the runtime, stores what was
/// finished and hands every message it still holds back to the queue at once (visibility 0), so
/// another worker picks it up.
public struct InferenceWorker: Service {
    public let context: StackContext
    public let runtime: any RuntimeBackend
    public let configuration: InferenceConfiguration
    public let logger: Logger
    let gpuClock = GPUClock()
    /// Stores the running tasks' live previews (``InferenceConfiguration/previewInterval``).
    let previewPublisher = PreviewPublisher()
    /// What the worker's heartbeat reports (``WorkerHeartbeat``).
    let activity = WorkerActivity()
    /// The clock of heartbeats, back-offs and visibility deadlines (a test clock in tests).
    let clock: ServiceClock
    /// Registered models on this worker's disk (nil without a model folder).
    public let modelCache: ModelCache?

    /// `modelCache`: a cache to share (workers of one pool in one process share one folder);
    /// nil makes one over ``InferenceConfiguration/modelDirectory`` when that is set.
    public init(
        context: StackContext, runtime: any RuntimeBackend, configuration: InferenceConfiguration, logger: Logger,
        clock: ServiceClock = .continuous, modelCache: ModelCache? = nil
    ) {
        self.clock = clock
        self.modelCache = modelCache ?? configuration.modelDirectory.map {
            InferenceWorker.makeModelCache(at: $0, pool: context.pools.pool(named: configuration.pool), objects: context.transport.objects)
        }
        self.context = context
        self.runtime = runtime
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "worker"] = "\(configuration.workerID)"
        self.logger = logger
    }

    var queue: any MessageQueue { context.workerQueue(pool: configuration.pool) }
    var results: QueueChannel<Sdq_V1_TaskResult> { context.results }
    var fetcher: URLFetcher { URLFetcher(policy: configuration.fetchPolicy, maxBytes: context.pools.limits.maxUploadBytes) }
    /// Receives after which a retryable input fetch failure becomes final (one before the DLQ).
    var maxAttempts: Int { max(1, context.pools.queues.maxReceiveCount - 1) }

    public func run() async throws {
        // The heartbeat goes on beside the work, from the start (the fleet sees a worker that
        // waits for its runtime), and says `draining` last.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.beat() }
            await self.work()
            group.cancelAll()
        }
        activity.drain()
        await writeHeartbeat(lifetime: configuration.fleetHeartbeatInterval)
    }

    /// Writes the heartbeat every ``InferenceConfiguration/fleetHeartbeatInterval`` until cancelled.
    func beat() async {
        while !Task.isCancelled {
            if Task.isShuttingDownGracefully { activity.drain() }
            await writeHeartbeat(lifetime: configuration.fleetHeartbeatInterval * 3)
            do { try await Task.sleep(for: configuration.fleetHeartbeatInterval) } catch { return }
        }
    }

    /// One heartbeat, counting for `lifetime`; a failure is logged (the next one may succeed).
    func writeHeartbeat(lifetime: Duration) async {
        var heartbeat = activity.heartbeat(
            pool: configuration.pool, worker: configuration.workerID, now: EpochClock.nowMillis(), lifetime: lifetime.milliseconds)
        await describeCache(into: &heartbeat)
        SDQMetrics.worker(
            pool: heartbeat.pool, ready: heartbeat.state == .idle || heartbeat.state == .running,
            runtimeUnreachable: !heartbeat.runtimeReachable && heartbeat.state != .starting, gpuBusyFraction: heartbeat.gpuBusyFraction)
        do { try await context.transport.tasks.recordHeartbeat(heartbeat) } catch {
            logger.warning("writing the worker's heartbeat failed", metadata: ["error": "\(error)"])
        }
    }

    private func work() async {
        // Take no message before the runtime can run it (a WebUI loads its model for minutes),
        // nor before the pool's required models are here and verified.
        await cancelWhenGracefulShutdown { await runtime.waitUntilReady() }
        if Task.isShuttingDownGracefully || Task.isCancelled { return }
        await cancelWhenGracefulShutdown { await self.fetchRequiredModels() }
        if Task.isShuttingDownGracefully || Task.isCancelled { return }
        activity.ready()
        let driver = WorkerDriver(
            effects: self,
            limits: .init(prefetch: configuration.prefetch, queueAhead: runtime.queueAhead, uploads: configuration.maxUploadsInFlight),
            visibility: configuration.visibilityTimeout, heartbeat: configuration.heartbeatInterval, clock: clock)
        // After a graceful shutdown the driver has handed back what it held; when cancelled, this does.
        let unfinished = await withTaskGroup(of: Void.self) { group in
            if let interval = configuration.previewInterval {
                let (objects, tasks, logger, publisher) = (context.transport.objects, context.transport.tasks, logger, previewPublisher)
                group.addTask { await publisher.run(every: interval, objects: objects, tasks: tasks, logger: logger) }
            }
            defer { group.cancelAll() }
            return await driver.run()
        }
        for (receipt, disposition) in unfinished {
            await release(receipt, disposition)
        }
        if !unfinished.isEmpty {
            logger.info("handed unfinished tasks back", metadata: ["count": "\(unfinished.count)"])
        }
    }
}

/// A message as the worker received it.
struct ReceivedMessage: Sendable {
    var message: QueueMessage
    /// When it arrived, epoch milliseconds.
    var receivedAt: Int64
}

extension InferenceWorker: WorkerEffects {
    func receive() async throws -> [WorkerMachine<ReceivedMessage, PreparedTask, FinishedTask>.Incoming] {
        let messages = try await queue.receive(
            maxMessages: 1, wait: configuration.receiveWait, visibilityTimeout: configuration.visibilityTimeout)
        let now = EpochClock.nowMillis()
        return messages.map {
            .init(
                receipt: $0.receiptHandle, label: $0.attributes[MessageAttribute.taskID] ?? $0.messageID,
                message: ReceivedMessage(message: $0, receivedAt: now))
        }
    }

    func prepare(_ received: ReceivedMessage) async -> Result<(job: PreparedTask, model: String), Settled> {
        await prepare(received.message, receivedAt: received.receivedAt).map { ($0, $0.task.model) }
    }

    func run(_ job: PreparedTask, window: RuntimeWindow, exclusive: Bool) async -> FinishedTask? {
        let outcome = await execute(job, window: window, awaitingClaim: exclusive)
        // Stopped by shutdown: the message stays leased and is handed back at the end.
        if case .handBack = outcome, Task.isCancelled { return nil }
        return outcome
    }

    func settle(_ outcome: FinishedTask) async -> MessageDisposition {
        await settleTraced(outcome)
    }

    func release(_ receipt: String, _ disposition: MessageDisposition) async {
        switch disposition {
        case .delete:
            do {
                try await queue.delete(receiptHandle: receipt)
            } catch {
                logger.warning("deleting a message failed; it may be delivered again", metadata: ["error": "\(error)"])
            }
        case .retry(let after):
            try? await queue.changeVisibility(receiptHandle: receipt, timeout: after)
        case .reject:
            try? await queue.changeVisibility(receiptHandle: receipt, timeout: .zero)
        }
    }

    func extend(_ receipt: String) async throws {
        try await queue.changeVisibility(receiptHandle: receipt, timeout: configuration.visibilityTimeout)
    }

    func report(_ trouble: WorkerTrouble) {
        switch trouble {
        case .receiveFailed(let error):
            logger.warning("receive failed", metadata: ["error": "\(error)"])
        case .extendFailed(let error):
            logger.warning("extending visibility failed", metadata: ["error": "\(error)"])
        case .handedBack(let count):
            logger.info("handed unfinished tasks back", metadata: ["count": "\(count)"])
        case .leaseLost(let labels):
            for label in labels {
                logger.error(
                    "lost the lease on a message: its visibility ran out before an extension succeeded; another worker may run it too",
                    metadata: ["task_id": "\(label)"])
            }
        }
    }

    /// Decodes a message and fetches its inputs; fails with what to do with a message settled here.
    private func prepare(_ message: QueueMessage, receivedAt: Int64) async -> Result<PreparedTask, Settled> {
        let task: Sdq_V1_GenerationTask
        do {
            task = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes)
        } catch {
            logger.error("undecodable task message; rejecting it to the dead-letter queue", metadata: ["error": "\(error)"])
            return .failure(Settled(disposition: .reject))
        }
        /// Reports a final failure before the runtime.
        func fail(_ code: String, _ text: String) async -> Result<PreparedTask, Settled> {
            .failure(Settled(disposition: await finish(result: failure(task, code: code, message: text, timings: .received(receivedAt)))))
        }
        do {
            // No store read here: the conditional `running` mark at the start is the check that
            // the task is still wanted (see ``executeOnRuntime(_:window:awaitingClaim:)``).
            var inputs: [Data] = []
            for reference in task.inputs {
                if !reference.url.isEmpty {
                    switch await fetchInput(reference.url) {
                    case .success(let data):
                        inputs.append(data)
                        continue
                    case .failure(let error) where error.retryable && message.receiveCount < maxAttempts:
                        throw error
                    case .failure(let error):
                        return await fail("input_fetch_failed", "init image \(reference.url): \(error.message)")
                    }
                }
                guard let object = try await context.transport.objects.get(key: reference.key) else {
                    return await fail("input_missing", "input object \(reference.key) does not exist")
                }
                inputs.append(object.data)
            }
            if let refusal = Self.extrasRefusal(task, inputs: inputs, limits: context.pools.limits) {
                return await fail("limit_exceeded", refusal)
            }
            // The task's registered models, fetched into the cache while the task ahead runs.
            if !task.assets.isEmpty {
                guard let modelCache else {
                    return await fail(
                        "model_cache_unconfigured", "this worker has no model folder (SDQ_MODEL_DIR) for registered models")
                }
                do {
                    _ = try await modelCache.acquire(task.assets)
                } catch where error.retryable && message.receiveCount < maxAttempts {
                    logger.warning("fetching a task's models failed; it will be retried", metadata: ["task_id": "\(task.id)", "error": "\(error)"])
                    return .failure(Settled(disposition: .retry(after: .seconds(5))))
                } catch {
                    return await fail(error.code, error.message)
                }
            }
            return .success(PreparedTask(message: message, task: task, inputs: inputs, receivedAt: receivedAt, inputsReadyAt: EpochClock.nowMillis()))
        } catch {
            logger.warning("preparing a task failed; it will be retried", metadata: ["task_id": "\(task.id)", "error": "\(error)"])
            return .failure(Settled(disposition: .retry(after: .seconds(2))))
        }
    }

    /// Why an extras (upscale) task may not run: its output — the input's size, known only now,
    /// times `upscaling_resize` (A1111's default 2; with `resize_mode` 1 the explicit
    /// `upscaling_resize_w/h`, already bounded at submission) — is larger than the pool's
    /// `max_width` × `max_height`. Nil when it may, or when the input's size cannot be read.
    static func extrasRefusal(_ task: Sdq_V1_GenerationTask, inputs: [Data], limits: RequestLimits) -> String? {
        guard task.kind == .extras, let input = inputs.first, let (width, height) = ImageDimensions.of(input) else { return nil }
        let options = task.runtimeRequest.isEmpty ? nil : (try? JSONValue.parse(task.runtimeRequest))
        if options?["resize_mode"]?.numberValue == 1 { return nil }
        let factor = options?["upscaling_resize"]?.numberValue ?? 2
        let (outWidth, outHeight) = (Double(width) * factor, Double(height) * factor)
        guard outWidth > Double(limits.maxWidth) || outHeight > Double(limits.maxHeight) else { return nil }
        return "upscaling the \(width)×\(height) input by \(factor) makes \(Int(outWidth))×\(Int(outHeight)), more than \(limits.maxWidth)×\(limits.maxHeight)"
    }

    /// Downloads an input named by URL (reference-format init images) under the fetch policy.
    private func fetchInput(_ url: String) async -> Result<Data, FetchError> {
        do { return .success(try await fetcher.fetch(url).data) } catch { return .failure(error) }
    }
}

/// A received, decoded task with its inputs, ready for the GPU.
struct PreparedTask: Sendable {
    var message: QueueMessage
    var task: Sdq_V1_GenerationTask
    var inputs: [Data]
    /// When the worker received its message.
    var receivedAt: Int64 = 0
    /// When its inputs were all here.
    var inputsReadyAt: Int64 = 0
    /// The trace context of the task's `inference` span, once it runs.
    var trace: Sdq_V1_TraceContext?
}

extension Sdq_V1_StageTimings {
    /// The timings of a task settled before it reached the runtime.
    static func received(_ at: Int64) -> Self {
        var timings = Self()
        timings.workerReceivedAtMs = at
        return timings
    }
}

/// What the GPU loop hands to the uploader.
enum FinishedTask: Sendable {
    /// Images to store and report.
    case completed(PreparedTask, [RuntimeImage], Sdq_V1_StageTimings)
    /// The runtime failed.
    case failed(PreparedTask, RuntimeError, Sdq_V1_StageTimings)
    /// Nothing to report (the task was cancelled or finished elsewhere): delete the message.
    case dropped(PreparedTask, owed: TaskRecord?)
    /// Give the message back to the queue (shutdown).
    case handBack(PreparedTask)
}
