import Crypto
import Foundation
import Synchronization
import SDQMessages
import SDQPlatform
import Tracing

extension InferenceWorker {
    /// Runs one task on the runtime: the GPU's critical path. The conditional mark `running` is
    /// the check that the task is still wanted (one write, no read before it). The runtime starts
    /// at once and the mark happens beside it, so no store round trip sits between two tasks or
    /// between two sampling steps — unless `awaitingClaim` (the task may make the runtime load
    /// another model): then the mark comes first, so a task cancelled while it waited in its lane
    /// never costs a model switch. If the mark finds the task finished or cancelled, the runtime
    /// is stopped (at most one store round trip after it started) and the task dropped; if the
    /// store cannot be reached, the runtime is stopped and the message handed back.
    ///
    /// `window` receives the runtime's own start and end (``RuntimeWindow``); they become the
    /// task's `runtime_started_at` and `runtime_finished_at`.
    func executeOnRuntime(_ prepared: PreparedTask, window: RuntimeWindow, awaitingClaim: Bool = false) async -> FinishedTask {
        let task = prepared.task
        let startedAt = EpochClock.nowMillis()
        var timings = Sdq_V1_StageTimings.received(prepared.receivedAt)
        timings.inputsReadyAtMs = prepared.inputsReadyAt
        timings.submittedAtMs = task.submittedAtMs
        timings.startedAtMs = startedAt
        if task.deadlineMs > 0, startedAt > task.deadlineMs {
            do {
                _ = try await context.transport.tasks.apply(.started(worker: configuration.workerID, at: startedAt), to: task.id)
            } catch {
                logger.warning("cannot mark an overdue task running", metadata: ["task_id": "\(task.id)", "error": "\(error)"])
            }
            return .failed(prepared, RuntimeError(code: "deadline_exceeded", message: "the task's deadline passed before it started", retryable: false), timings)
        }
        let events = Self.webhookEvents(of: task)
        let context = self.context
        let reporter = ProgressReporter(
            store: context.transport.tasks, taskID: task.id, granularity: configuration.progressGranularity,
            writeInterval: configuration.progressInterval,
            eventInterval: events.contains(WebhookEvents.progress) ? .seconds(context.pools.webhooks.progressIntervalSeconds) : nil
        ) { progress in
            let data = JSONValue.object([
                "id": .string(task.id), "status": .string("running"), "progress": .number(progress), "pool": .string(task.pool),
            ])
            try? await WebhookEvents.enqueue(
                event: WebhookEvents.progress, taskID: task.id, data: data, step: Int(progress * 100), trace: task.trace, context: context)
        }
        let workerID = configuration.workerID
        let store = context.transport.tasks
        async let marked: MarkOutcome = {
            do {
                let outcome = try await store.apply(.started(worker: workerID, at: startedAt), to: task.id)
                switch outcome {
                case .applied: break
                case .conflict(let current):
                    reporter.stop(.cancelled, seen: current)
                    return .notRunnable
                case .notFound:
                    reporter.stop(.cancelled)
                    return .notRunnable
                }
                if events.contains(WebhookEvents.running) {
                    let data = JSONValue.object([
                        "id": .string(task.id), "status": .string("running"), "pool": .string(task.pool),
                        "worker": .string(workerID), "started_at": .number(Double(startedAt)),
                    ])
                    try? await WebhookEvents.enqueue(
                        event: WebhookEvents.running, taskID: task.id, data: data, trace: task.trace, context: context)
                }
                return .running
            } catch {
                reporter.stop(.storeFailed)
                return .storeFailed("\(error)")
            }
        }()
        if awaitingClaim, let refused = refusal(await marked, prepared, reporter) { return refused }
        let deadline = task.deadlineMs
        let overdue = StopFlag()
        var job = Self.job(for: prepared)
        if configuration.previewInterval != nil {
            job.wantsPreviews = true
            previewPublisher.track(task.id, window.previews)
        }
        defer { previewPublisher.untrack(task.id) }
        // Files the cache added or evicted since the runtime last listed its folders.
        if let modelCache, !task.assets.isEmpty {
            let changed = await modelCache.takeChangedKinds()
            if !changed.isEmpty {
                do { try await runtime.refreshModels(changed) } catch {
                    logger.warning("the runtime did not rescan its model folders", metadata: ["task_id": "\(task.id)", "error": "\(error)"])
                }
            }
        }
        let callStarted = EpochClock.nowMillis()
        activity.began(task: task.id, model: task.model, digest: task.assets.first?.sha256, at: callStarted)
        let result: Result<[RuntimeImage], RuntimeError> = await withSpan("runtime \(job.kind)", ofKind: .client) { span in
          span.attributes["sdq.runtime"] = runtime.name
          return await withTaskGroup(of: Void.self) { group in
            group.addTask { await reporter.watch() }
            defer { group.cancelAll() }
            do throws(RuntimeError) {
                // A task past its deadline is stopped like a cancelled one (the backend interrupts
                // the runtime), then failed for good.
                return .success(try await runtime.run(job, window: window) { value in
                    if deadline > 0, EpochClock.nowMillis() > deadline {
                        overdue.set()
                        return false
                    }
                    return reporter.offer(value)
                })
            } catch {
                return .failure(error)
            }
          }
        }
        let callFinished = EpochClock.nowMillis()
        window.close()
        timings.runtimeStartedAtMs = window.startedAt ?? window.submittedAt ?? callStarted
        timings.runtimeFinishedAtMs = max(timings.runtimeStartedAtMs, window.finishedAt ?? callFinished)
        if case .failure(let error) = result {
            activity.ended(task: task.id, start: timings.runtimeStartedAtMs, end: timings.runtimeFinishedAtMs, error: error)
        } else {
            activity.ended(task: task.id, start: timings.runtimeStartedAtMs, end: timings.runtimeFinishedAtMs, error: nil)
        }
        if let refused = refusal(await marked, prepared, reporter) { return refused }
        switch result {
        case .success(let images):
            if reporter.stopReason == .cancelled { return .dropped(prepared, owed: reporter.owedEnding) }
            return .completed(prepared, images, timings)
        case .failure(let error):
            if overdue.isSet {
                return .failed(prepared, RuntimeError(code: "deadline_exceeded", message: "the task's deadline passed while it ran; the runtime was interrupted", retryable: false), timings)
            }
            if reporter.stopReason == .cancelled { return .dropped(prepared, owed: reporter.owedEnding) }
            if Task.isCancelled { return .handBack(prepared) }
            if error.code == "model_load_failed" {
                // One bad file fails its own task only: the runtime is checked again before the next.
                logger.warning("a model did not load; checking the runtime before the next task", metadata: ["task_id": "\(task.id)", "error": "\(error)"])
                await runtime.waitUntilReady()
            }
            return .failed(prepared, error, timings)
        }
    }

    /// What becomes of a task whose `running` mark did not succeed (nil: it did).
    private func refusal(_ mark: MarkOutcome, _ prepared: PreparedTask, _ reporter: ProgressReporter) -> FinishedTask? {
        switch mark {
        case .storeFailed(let detail):
            logger.warning("cannot mark task running; handing it back", metadata: ["task_id": "\(prepared.task.id)", "error": "\(detail)"])
            return .handBack(prepared)
        case .notRunnable:
            return .dropped(prepared, owed: reporter.owedEnding)
        case .running:
            return nil
        }
    }

    /// The webhook events a task asked for beyond `completed` (sent by workers); empty without a callback.
    static func webhookEvents(of task: Sdq_V1_GenerationTask) -> Set<String> {
        guard task.hasCallback, !task.callback.url.isEmpty else { return [] }
        return Set(task.callback.events)
    }

    static func job(for prepared: PreparedTask) -> RuntimeJob {
        let task = prepared.task
        let p = task.parameters
        let kind = TaskKind(message: task.kind)
        var job = RuntimeJob(
            kind: kind, prompt: p.prompt, negativePrompt: p.negativePrompt, seed: p.seed, width: Int(p.width),
            height: Int(p.height), steps: Int(p.steps), cfgScale: p.cfgScale, sampler: p.samplerName,
            batchSize: Int(max(1, p.batchSize)), denoisingStrength: p.denoisingStrength, model: task.model,
            runtimeOptions: task.runtimeRequest.isEmpty ? nil : task.runtimeRequest, initImages: prepared.inputs)
        job.taskID = task.id
        if let checkpoint = task.assets.first(where: { $0.kind == ModelRecord.Kind.checkpoint.rawValue }) {
            job.model = checkpoint.fileName
            job.checkpointFile = checkpoint.fileName
            job.checkpointBytes = checkpoint.bytes
        }
        job.loras = task.assets.filter { $0.kind == ModelRecord.Kind.lora.rawValue }.map {
            LoraFile(fileName: $0.fileName, weight: $0.weight)
        }
        return job
    }

    // MARK: Uploader

    /// Stores what the GPU produced and reports it (off the GPU's critical path); says what
    /// becomes of the message.
    func settleUntraced(_ finished: FinishedTask) async -> MessageDisposition {
        if let modelCache, !finished.prepared.task.assets.isEmpty { await modelCache.release(finished.prepared.task.assets) }
        switch finished {
        case .dropped(let prepared, let owed):
            guard let owed else { return .delete }
            return await forwardCancel(owed, task: prepared.task)
        case .handBack:
            return .retry(after: .zero)
        case .failed(let prepared, let error, let timings):
            let maxReceives = context.pools.queues.maxReceiveCount
            if error.retryable, prepared.message.receiveCount < maxReceives {
                let delay = Duration.seconds(min(60, 2 << min(prepared.message.receiveCount, 5)))
                logger.warning("runtime failed; retrying later", metadata: ["task_id": "\(prepared.task.id)", "error": "\(error)"])
                SDQMetrics.retry(pool: configuration.pool, reason: error.code)
                return .retry(after: delay)
            }
            return await finish(result: failure(prepared.task, code: error.code, message: error.message, timings: timings))
        case .completed(let prepared, let images, var timings):
            do {
                let references = try await upload(images, for: prepared.task)
                timings.uploadedAtMs = EpochClock.nowMillis()
                var result = baseResult(prepared.task, timings: timings)
                result.outcome = .succeeded
                result.images = references
                // The model that made the images when the runtime said which (a ComfyUI workflow's own).
                if let model = images.first?.model, !model.isEmpty { result.model = model }
                return await finish(result: result)
            } catch {
                logger.warning("upload failed; the task will run again", metadata: ["task_id": "\(prepared.task.id)", "error": "\(error)"])
                return .retry(after: .seconds(2))
            }
        }
    }

    private func upload(_ images: [RuntimeImage], for task: Sdq_V1_GenerationTask) async throws(TransportError) -> [Sdq_V1_ImageRef] {
        let prefix = task.output.prefix.isEmpty ? "outputs/\(task.id)/" : task.output.prefix
        var references: [Sdq_V1_ImageRef] = []
        for (index, image) in images.enumerated() {
            // PNG images keep their historical name; other media (a ComfyUI video) carry their type.
            let key = image.contentType == "image/png" ? "\(prefix)image-\(index).png" : "\(prefix)output-\(index).\(image.fileExtension)"
            try await context.transport.objects.put(key: key, data: image.png, contentType: image.contentType)
            var reference = Sdq_V1_ImageRef()
            reference.object.bucket = context.transport.objects.bucket
            reference.object.key = key
            reference.object.contentType = image.contentType
            reference.object.size = UInt64(image.png.count)
            reference.object.sha256 = SHA256.hash(data: image.png).map { String(format: "%02x", $0) }.joined()
            reference.width = UInt32(image.width)
            reference.height = UInt32(image.height)
            reference.seed = image.seed
            references.append(reference)
        }
        return references
    }

    func baseResult(_ task: Sdq_V1_GenerationTask, timings: Sdq_V1_StageTimings) -> Sdq_V1_TaskResult {
        var result = Sdq_V1_TaskResult()
        result.id = task.id
        result.pool = task.pool
        result.model = task.model
        result.timings = timings
        // The result-writer's span continues from the current one (the worker's `result` span).
        let current = TraceCarrier.current()
        result.trace = current.traceparent.isEmpty ? task.trace : current
        result.clientContext = task.clientContext
        result.attempt = task.attempt
        result.worker.workerID = configuration.workerID
        result.worker.pool = configuration.pool
        result.worker.runtime = runtime.name
        result.worker.host = ProcessInfo.processInfo.hostName
        return result
    }

    func failure(_ task: Sdq_V1_GenerationTask, code: String, message: String, timings: Sdq_V1_StageTimings) -> Sdq_V1_TaskResult {
        var result = baseResult(task, timings: timings)
        result.outcome = .failed
        result.error.code = code
        result.error.message = message
        result.error.retryable = false
        return result
    }

    /// Sends the result: the message is then deleted; if sending fails it comes back later.
    func finish(result: Sdq_V1_TaskResult) async -> MessageDisposition {
        do {
            try await results.send(result)
            return .delete
        } catch {
            logger.error("cannot send the task result; the task will run again", metadata: ["task_id": "\(result.id)", "error": "\(error)"])
            return .retry(after: .seconds(2))
        }
    }

    /// Ends a cancelled task nobody announced yet through the result-writer, like any result
    /// (``TaskLifecycle/onSkipped(_:)``).
    func forwardCancel(_ record: TaskRecord, task: Sdq_V1_GenerationTask) async -> MessageDisposition {
        var result = Sdq_V1_TaskResult.cancelled(taskID: task.id, message: record.error?.message ?? "cancelled by the client")
        result.pool = task.pool
        result.trace = task.trace
        return await finish(result: result)
    }
}

/// How marking a task `running` went.
enum MarkOutcome: Sendable {
    case running
    /// Finished or cancelled meanwhile.
    case notRunnable
    case storeFailed(String)
}

/// Progress of the running task, off the GPU's path: the runtime's callback only records the
/// value (``offer(_:)``); ``watch()`` writes it to the task record at most once per
/// `writeInterval` and only when it changed by `granularity`. The write is conditional on the task
/// not having ended, so a cancel is seen through it; when progress did not change the record is
/// read instead, so a cancel is seen even when the runtime is stuck. Either way a running task
/// costs one store request per `writeInterval`, and a task shorter than that none.
final class ProgressReporter: Sendable {
    enum Stop: Sendable, Equatable { case cancelled, storeFailed }
    private struct State {
        var latest = 0.0
        var written = 0.0
        var stop: Stop?
        var seen: TaskRecord?
    }
    let store: any TaskStore
    let taskID: String
    let granularity: Double
    let writeInterval: Duration
    /// Least time between two progress events (`progress` webhooks); nil sends none.
    let eventInterval: Duration?
    let sendEvent: @Sendable (Double) async -> Void
    private let state = Mutex(State())

    init(
        store: any TaskStore, taskID: String, granularity: Double, writeInterval: Duration = .seconds(2),
        eventInterval: Duration? = nil, sendEvent: @escaping @Sendable (Double) async -> Void = { _ in }
    ) {
        self.store = store
        self.taskID = taskID
        self.granularity = granularity
        self.writeInterval = writeInterval
        self.eventInterval = eventInterval
        self.sendEvent = sendEvent
    }

    /// Records `value` without waiting; false once the task must stop.
    func offer(_ value: Double) -> Bool {
        state.withLock { state in
            state.latest = min(1, max(0, value))
            return state.stop == nil
        }
    }

    /// Stops the task; `seen` is the record that showed why.
    func stop(_ reason: Stop, seen: TaskRecord? = nil) {
        state.withLock {
            if $0.stop == nil { $0.stop = reason }
            if $0.seen == nil { $0.seen = seen }
        }
    }

    var stopReason: Stop? { state.withLock { $0.stop } }

    /// The record of a cancelled task whose ending nobody announced yet, if that is why it stopped.
    var owedEnding: TaskRecord? {
        let (stop, seen) = state.withLock { ($0.stop, $0.seen) }
        guard stop == .cancelled, let seen, case .forwardCancel(let record) = TaskLifecycle.onSkipped(seen) else { return nil }
        return record
    }

    /// Writes progress and watches for a cancel until the calling task is cancelled.
    func watch(tick: Duration = .milliseconds(50)) async {
        var lastCheck = ContinuousClock.now
        var lastEvent: ContinuousClock.Instant?
        while !Task.isCancelled {
            do { try await Task.sleep(for: tick) } catch { return }
            guard ContinuousClock.now - lastCheck >= writeInterval else { continue }
            lastCheck = ContinuousClock.now
            let due: Double? = state.withLock { state in
                guard state.stop == nil, state.latest - state.written >= granularity || (state.latest >= 1 && state.written < 1) else {
                    return nil
                }
                state.written = state.latest
                return state.latest
            }
            guard let progress = due else {
                if let record = try? await store.get(id: taskID), record.status.isTerminal || record.cancelRequested {
                    stop(.cancelled, seen: record)
                }
                continue
            }
            // Not yet `running` is fine: the mark may still be in flight. Ended means stop.
            switch try? await store.apply(.progressed(progress), to: taskID) {
            case .conflict(let current)?:
                stop(.cancelled, seen: current)
            case .notFound?:
                stop(.cancelled)
            case .applied?:
                // Progress events are rate-limited; the last step (1.0) is left to `completed`.
                if let eventInterval, progress < 1, lastEvent.map({ ContinuousClock.now - $0 >= eventInterval }) ?? true {
                    lastEvent = ContinuousClock.now
                    await sendEvent(progress)
                }
            case nil:
                break
            }
        }
    }
}

/// A flag set from a progress callback or loop and read after the run.
final class StopFlag: Sendable {
    private let state = Mutex(false)
    func set() { state.withLock { $0 = true } }
    var isSet: Bool { state.withLock { $0 } }
}

