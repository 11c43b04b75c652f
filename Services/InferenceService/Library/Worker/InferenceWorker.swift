import Foundation
import Logging
import SDQMessages
import SDQPlatform
import ServiceLifecycle

/// The GPU worker: consumes its pool's queue and keeps the runtime busy.
///
/// Three loops run side by side, so the GPU never waits on the network:
/// - the **receiver** long-polls the next task and fetches its inputs while the current one runs
///   (`prefetch` tasks ahead);
/// - the **GPU loop** runs one task at a time on the runtime;
/// - the **uploader** stores images, sends the `TaskResult` and deletes the message behind it.
///
/// One heartbeat loop extends the visibility of every held message. On graceful shutdown
/// (SIGTERM: Spot interruption, scale-in) the worker stops taking work and hands every message it
/// still holds back to the queue at once (visibility 0), so another worker picks it up.
public struct InferenceWorker: Service {
    public let context: StackContext
    public let runtime: any RuntimeBackend
    public let configuration: InferenceConfiguration
    public let logger: Logger
    let loadedReports = LoadedModelReports()
    let gpuClock = GPUClock()
    /// The clock of heartbeats and visibility deadlines (a test clock in tests).
    let clock: ServiceClock

    public init(
        context: StackContext, runtime: any RuntimeBackend, configuration: InferenceConfiguration, logger: Logger,
        clock: ServiceClock = .continuous
    ) {
        self.clock = clock
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
        // Take no message before the runtime can run it (a WebUI loads its model for minutes).
        await cancelWhenGracefulShutdown { await runtime.waitUntilReady() }
        if Task.isShuttingDownGracefully || Task.isCancelled { return }
        let ledger = InFlightLedger(visibility: configuration.visibilityTimeout, heartbeat: configuration.heartbeatInterval, clock: clock)
        await pipeline(ledger: ledger)
        let unfinished = ledger.drain()
        for receipt in unfinished {
            try? await queue.changeVisibility(receiptHandle: receipt, timeout: .zero)
        }
        if !unfinished.isEmpty {
            logger.info("handed unfinished tasks back", metadata: ["count": "\(unfinished.count)"])
        }
    }

    private func pipeline(ledger: InFlightLedger) async {
        let (prepared, preparedInput) = AsyncStream.makeStream(of: PreparedTask.self)
        let (finished, finishedInput) = AsyncStream.makeStream(of: FinishedTask.self)
        // One task runs, `queueAhead` wait in the runtime's own queue, `prefetch` more are fetched.
        let slots = AsyncSemaphore(value: configuration.prefetch + 1 + runtime.queueAhead)
        let runtimeSlots = AsyncSemaphore(value: 1 + runtime.queueAhead)
        let uploadSlots = AsyncSemaphore(value: configuration.maxUploadsInFlight)
        await withTaskGroup(of: Void.self) { outer in
            outer.addTask { await self.heartbeatLoop(ledger: ledger) }
            // Uploads drain on graceful shutdown: work the GPU finished is stored and reported.
            await withTaskGroup(of: Void.self) { drain in
                // The receiver is not cancelled on shutdown: it lets its pending long poll finish
                // (SQS would hand the message over anyway) and leaves what it got in the ledger.
                drain.addTask { await self.receiveLoop(ledger: ledger, slots: slots, output: preparedInput) }
                drain.addTask {
                    // Discarding: a completed upload is released at once (a plain task group keeps every
                    // finished child until it is awaited, which grew the worker by each task's images).
                    await withDiscardingTaskGroup { uploads in
                        for await item in finished {
                            uploads.addTask {
                                await self.settle(item, ledger: ledger)
                                uploadSlots.signal()
                            }
                        }
                    }
                }
                // The GPU stops at once on graceful shutdown; what it held is handed back.
                await cancelWhenGracefulShutdown {
                    await self.feedRuntime(
                        prepared, runtimeSlots: runtimeSlots, uploadSlots: uploadSlots, output: finishedInput, slots: slots)
                }
                finishedInput.finish()
            }
            outer.cancelAll()
        }
    }

    /// Hands the runtime its tasks in order: the next one as soon as the one before it has been
    /// submitted (``RuntimeWindow/untilSubmitted()``), while at most `1 + queueAhead` are at the
    /// runtime, so it waits in the runtime's own queue and starts the moment the current one ends.
    /// A task that may make the runtime load another model (the worker's first, or a model change)
    /// waits until the runtime is idle instead: a model switch never lands under a running job.
    private func feedRuntime(
        _ prepared: AsyncStream<PreparedTask>, runtimeSlots: AsyncSemaphore, uploadSlots: AsyncSemaphore,
        output: AsyncStream<FinishedTask>.Continuation, slots: AsyncSemaphore
    ) async {
        await withDiscardingTaskGroup { group in
            for await task in prepared {
                let (switched, first) = gpuClock.admit(model: task.task.model)
                let exclusive = switched || first
                let permits = exclusive ? 1 + runtime.queueAhead : 1
                var admitted = true
                for _ in 0..<permits where admitted { admitted = await runtimeSlots.wait() }
                guard admitted else { break }
                let window = RuntimeWindow()
                // The runtime's slot is free once the runtime is done with the job, not once the
                // worker has recorded it (its `running` mark may still be on its way).
                window.whenClosed { for _ in 0..<permits { runtimeSlots.signal() } }
                group.addTask {
                    let outcome = await self.execute(task, window: window, awaitingClaim: exclusive)
                    window.close()
                    // Interrupted by shutdown: leave the message in the ledger. It is handed back
                    // once the receiver has stopped, so the receiver cannot take it again.
                    if case .handBack = outcome, Task.isCancelled { return }
                    guard await uploadSlots.wait() else { return }
                    output.yield(outcome)
                    slots.signal()
                }
                await window.untilSubmitted()
            }
        }
    }

    // MARK: Receiver

    private func receiveLoop(
        ledger: InFlightLedger, slots: AsyncSemaphore, output: AsyncStream<PreparedTask>.Continuation
    ) async {
        defer { output.finish() }
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            guard await cancelWhenGracefulShutdown({ await slots.wait() }) else { return }
            if Task.isShuttingDownGracefully {
                slots.signal()
                return
            }
            let message: QueueMessage
            let receivedAt: Int64
            do {
                guard
                    let first = try await queue.receive(
                        maxMessages: 1, wait: configuration.receiveWait, visibilityTimeout: configuration.visibilityTimeout
                    ).first
                else {
                    slots.signal()
                    continue
                }
                message = first
                receivedAt = EpochClock.nowMillis()
                backoff = .milliseconds(200)
            } catch {
                slots.signal()
                if Task.isCancelled { return }
                logger.warning("receive failed", metadata: ["error": "\(error)"])
                do { try await clock.sleepFor(backoff) } catch { return }
                backoff = min(backoff * 2, .seconds(10))
                continue
            }
            ledger.add(receipt: message.receiptHandle, label: message.attributes[MessageAttribute.taskID] ?? message.messageID)
            // Received while shutting down: leave it in the ledger, it is handed back.
            if Task.isShuttingDownGracefully { return }
            if let task = await prepare(message, receivedAt: receivedAt, ledger: ledger) {
                output.yield(task)
            } else {
                slots.signal()
            }
        }
    }

    /// Decodes a message and fetches its inputs; nil when it was settled here.
    private func prepare(_ message: QueueMessage, receivedAt: Int64, ledger: InFlightLedger) async -> PreparedTask? {
        let task: Sdq_V1_GenerationTask
        do {
            task = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes)
        } catch {
            logger.error("undecodable task message; rejecting it to the dead-letter queue", metadata: ["error": "\(error)"])
            ledger.remove(receipt: message.receiptHandle)
            try? await queue.changeVisibility(receiptHandle: message.receiptHandle, timeout: .zero)
            return nil
        }
        do {
            // No store read here: the conditional `running` mark at the start is the check that
            // the task is still wanted (see ``executeOnRuntime(_:awaitingClaim:)``).
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
                        await finish(message, ledger: ledger, result: failure(
                            task, code: "input_fetch_failed", message: "init image \(reference.url): \(error.message)",
                            timings: .received(receivedAt)))
                        return nil
                    }
                }
                guard let object = try await context.transport.objects.get(key: reference.key) else {
                    await finish(message, ledger: ledger, result: failure(
                        task, code: "input_missing", message: "input object \(reference.key) does not exist", timings: .received(receivedAt)))
                    return nil
                }
                inputs.append(object.data)
            }
            if let refusal = Self.extrasRefusal(task, inputs: inputs, limits: context.pools.limits) {
                await finish(message, ledger: ledger, result: failure(task, code: "limit_exceeded", message: refusal, timings: .received(receivedAt)))
                return nil
            }
            return PreparedTask(message: message, task: task, inputs: inputs, receivedAt: receivedAt, inputsReadyAt: EpochClock.nowMillis())
        } catch {
            logger.warning("preparing a task failed; it will be retried", metadata: ["task_id": "\(task.id)", "error": "\(error)"])
            ledger.remove(receipt: message.receiptHandle)
            try? await queue.changeVisibility(receiptHandle: message.receiptHandle, timeout: .seconds(2))
            return nil
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

    // MARK: Heartbeat

    /// Extends the held messages' visibility as ``LeaseMachine`` says (see
    /// ``heartbeat(ledger:clock:interval:extend:lost:)``).
    func heartbeatLoop(ledger: InFlightLedger) async {
        let queue = self.queue, visibility = configuration.visibilityTimeout, logger = self.logger
        await Self.heartbeat(
            ledger: ledger, clock: clock, interval: configuration.heartbeatInterval,
            extend: { receipt in try await queue.changeVisibility(receiptHandle: receipt, timeout: visibility) },
            failed: { error in logger.warning("extending visibility failed", metadata: ["error": "\(error)"]) },
            lost: { label in
                logger.error(
                    "lost the lease on a message: its visibility ran out before an extension succeeded; another worker may run it too",
                    metadata: ["task_id": "\(label)"])
            })
    }

    /// Performs the leases' actions until cancelled: sleeps on `clock` until the next lease is due
    /// (at most `interval`, so a lease added meanwhile is not missed), extends the due ones, and
    /// reports the lost ones.
    static func heartbeat(
        ledger: InFlightLedger, clock: ServiceClock, interval: Duration, extend: @Sendable (String) async throws -> Void,
        failed: @Sendable (any Error) -> Void = { _ in }, lost: @Sendable (String) -> Void = { _ in }
    ) async {
        while !Task.isCancelled {
            let now = ledger.now
            let wake = min(ledger.nextDeadline ?? (now + interval), now + interval)
            do { try await clock.sleepFor(max(.zero, wake - now)) } catch { return }
            let (actions, at) = ledger.tick()
            for action in actions {
                switch action {
                case .extend(let receipts):
                    for receipt in receipts {
                        do {
                            try await extend(receipt)
                            ledger.extended(receipt, at: at)
                        } catch {
                            failed(error)
                        }
                    }
                case .lost(let leases):
                    for lease in leases { lost(lease.label) }
                }
            }
        }
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
