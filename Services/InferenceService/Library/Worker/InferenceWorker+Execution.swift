import Crypto
import Foundation
import Synchronization
import SDQMessages
import SDQPlatform

extension InferenceWorker {
    /// Runs one task on the runtime (the GPU's critical path: nothing else happens here).
    func execute(_ prepared: PreparedTask) async -> FinishedTask {
        let task = prepared.task
        let startedAt = EpochClock.nowMillis()
        let workerID = configuration.workerID
        let started: UpdateOutcome
        do {
            started = try await context.transport.tasks.update(id: task.id, ifStatusIn: TaskStatus.nonTerminal) { record in
                record.status = .running
                record.worker = workerID
                record.progress = 0
                record.timings.startedAt = startedAt
            }
        } catch {
            logger.warning("cannot mark task running; handing it back", metadata: ["task": "\(task.id)", "error": "\(error)"])
            return .handBack(prepared)
        }
        guard case .applied = started else { return .dropped(prepared) }

        var timings = Sdq_V1_StageTimings()
        timings.submittedAtMs = task.submittedAtMs
        timings.startedAtMs = startedAt
        if task.deadlineMs > 0, startedAt > task.deadlineMs {
            return .failed(prepared, RuntimeError(code: "deadline_exceeded", message: "the task's deadline passed before it started", retryable: false), timings)
        }
        let reporter = ProgressReporter(store: context.transport.tasks, taskID: task.id, granularity: configuration.progressGranularity)
        timings.runtimeStartedAtMs = EpochClock.nowMillis()
        let deadline = task.deadlineMs
        let overdue = StopFlag()
        do {
            // A task past its deadline is stopped like a cancelled one (the backend interrupts the
            // runtime), then failed for good.
            let images = try await runtime.run(Self.job(for: prepared)) { value in
                if deadline > 0, EpochClock.nowMillis() > deadline {
                    overdue.set()
                    return false
                }
                return await reporter.report(value)
            }
            timings.runtimeFinishedAtMs = EpochClock.nowMillis()
            return .completed(prepared, images, timings)
        } catch {
            timings.runtimeFinishedAtMs = EpochClock.nowMillis()
            if overdue.isSet {
                return .failed(prepared, RuntimeError(code: "deadline_exceeded", message: "the task's deadline passed while it ran; the runtime was interrupted", retryable: false), timings)
            }
            if await reporter.wasCancelled { return .dropped(prepared) }
            if Task.isCancelled { return .handBack(prepared) }
            return .failed(prepared, error, timings)
        }
    }

    static func job(for prepared: PreparedTask) -> RuntimeJob {
        let task = prepared.task
        let p = task.parameters
        let kind: String =
            switch task.kind {
            case .img2Img: "img2img"
            case .extras: "extras"
            case .comfyuiWorkflow: "comfyui_workflow"
            default: "txt2img"
            }
        return RuntimeJob(
            kind: kind, prompt: p.prompt, negativePrompt: p.negativePrompt, seed: p.seed, width: Int(p.width),
            height: Int(p.height), steps: Int(p.steps), cfgScale: p.cfgScale, sampler: p.samplerName,
            batchSize: Int(max(1, p.batchSize)), denoisingStrength: p.denoisingStrength, model: task.model,
            runtimeOptions: task.runtimeRequest.isEmpty ? nil : task.runtimeRequest, initImages: prepared.inputs)
    }

    // MARK: Uploader

    /// Stores what the GPU produced and settles the message (off the GPU's critical path).
    func settle(_ finished: FinishedTask, ledger: InFlightLedger) async {
        switch finished {
        case .dropped(let prepared):
            await forget(prepared.message, ledger: ledger)
        case .handBack(let prepared):
            await ledger.remove(receipt: prepared.message.receiptHandle)
            try? await queue.changeVisibility(receiptHandle: prepared.message.receiptHandle, timeout: .zero)
        case .failed(let prepared, let error, let timings):
            let maxReceives = context.pools.queues.maxReceiveCount
            if error.retryable, prepared.message.receiveCount < maxReceives {
                let delay = Duration.seconds(min(60, 2 << min(prepared.message.receiveCount, 5)))
                logger.warning("runtime failed; retrying later", metadata: ["task": "\(prepared.task.id)", "error": "\(error)"])
                await ledger.remove(receipt: prepared.message.receiptHandle)
                try? await queue.changeVisibility(receiptHandle: prepared.message.receiptHandle, timeout: delay)
                return
            }
            await finish(prepared.message, ledger: ledger, result: failure(prepared.task, code: error.code, message: error.message, timings: timings))
        case .completed(let prepared, let images, var timings):
            do {
                let references = try await upload(images, for: prepared.task)
                timings.uploadedAtMs = EpochClock.nowMillis()
                var result = baseResult(prepared.task, timings: timings)
                result.outcome = .succeeded
                result.images = references
                await finish(prepared.message, ledger: ledger, result: result)
            } catch {
                logger.warning("upload failed; the task will run again", metadata: ["task": "\(prepared.task.id)", "error": "\(error)"])
                await ledger.remove(receipt: prepared.message.receiptHandle)
                try? await queue.changeVisibility(receiptHandle: prepared.message.receiptHandle, timeout: .seconds(2))
            }
        }
    }

    private func upload(_ images: [RuntimeImage], for task: Sdq_V1_GenerationTask) async throws(TransportError) -> [Sdq_V1_ImageRef] {
        let prefix = task.output.prefix.isEmpty ? "outputs/\(task.id)/" : task.output.prefix
        var references: [Sdq_V1_ImageRef] = []
        for (index, image) in images.enumerated() {
            let key = "\(prefix)image-\(index).png"
            try await context.transport.objects.put(key: key, data: image.png, contentType: "image/png")
            var reference = Sdq_V1_ImageRef()
            reference.object.bucket = context.transport.objects.bucket
            reference.object.key = key
            reference.object.contentType = "image/png"
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
        result.trace = task.trace
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

    /// Sends the result, then deletes the message; if sending fails the message comes back later.
    func finish(_ message: QueueMessage, ledger: InFlightLedger, result: Sdq_V1_TaskResult) async {
        var attributes = [MessageAttribute.taskID: result.id]
        if !result.trace.traceparent.isEmpty { attributes[MessageAttribute.traceparent] = result.trace.traceparent }
        let encoded = MessageCodec.encode(result, attributes: attributes)
        do {
            try await results.send(body: encoded.body, attributes: encoded.attributes)
        } catch {
            logger.error("cannot send the task result; the task will run again", metadata: ["task": "\(result.id)", "error": "\(error)"])
            await ledger.remove(receipt: message.receiptHandle)
            try? await queue.changeVisibility(receiptHandle: message.receiptHandle, timeout: .seconds(2))
            return
        }
        await forget(message, ledger: ledger)
    }

    /// Deletes a settled message and stops extending it.
    func forget(_ message: QueueMessage, ledger: InFlightLedger) async {
        await ledger.remove(receipt: message.receiptHandle)
        do {
            try await queue.delete(receiptHandle: message.receiptHandle)
        } catch {
            logger.warning("deleting a message failed; it may be delivered again", metadata: ["error": "\(error)"])
        }
    }
}

/// Writes progress to the task record (at most every `granularity`) and notices cancellation.
actor ProgressReporter {
    let store: any TaskStore
    let taskID: String
    let granularity: Double
    private var lastWritten = 0.0
    private(set) var wasCancelled = false

    init(store: any TaskStore, taskID: String, granularity: Double) {
        self.store = store
        self.taskID = taskID
        self.granularity = granularity
    }

    /// Records `value`; false once the task is no longer running (cancelled).
    func report(_ value: Double) async -> Bool {
        if wasCancelled { return false }
        guard value - lastWritten >= granularity || value >= 1 else { return true }
        lastWritten = value
        let progress = min(1, max(0, value))
        let outcome = try? await store.update(id: taskID, ifStatusIn: [.running]) { $0.progress = progress }
        if case .conflict? = outcome { wasCancelled = true }
        if case .notFound? = outcome { wasCancelled = true }
        return !wasCancelled
    }
}

/// A flag set from a progress callback or loop and read after the run.
final class StopFlag: Sendable {
    private let state = Mutex(false)
    func set() { state.withLock { $0 = true } }
    var isSet: Bool { state.withLock { $0 } }
}
