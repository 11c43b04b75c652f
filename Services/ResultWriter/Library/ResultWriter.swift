import Foundation
import Logging
import SDQMessages
import SDQPlatform
import ServiceLifecycle

/// Finalises tasks: moves each record to its terminal state exactly once and writes the result
/// manifest (`results/{id}/manifest.json`, the status document with `s3://` image URLs).
///
/// Idempotent by construction: the terminal transition is conditional on a non-terminal status,
/// and the manifest is derived from the stored terminal record under a fixed key, so a result
/// delivered twice, or a result racing a cancel, leaves one terminal state and one manifest.
/// Results that land in the results dead-letter queue fail their task (`dead_lettered`).
public struct ResultWriter: Service {
    public let context: StackContext
    public let logger: Logger
    public var receiveWait: Duration

    public init(context: StackContext, logger: Logger, receiveWait: Duration = .seconds(20)) {
        self.context = context
        self.logger = logger
        self.receiveWait = receiveWait
    }

    /// The object key of a task's manifest.
    public static func manifestKey(for taskID: String) -> String { "results/\(taskID)/manifest.json" }

    public func run() async throws {
        let names = context.names
        // Each consumer stops receiving on graceful shutdown and finishes what it holds.
        await withTaskGroup(of: Void.self) { group in
            let results = QueueConsumer(queue: context.transport.queue(named: names.resultsQueue), logger: logger, wait: receiveWait)
            group.addTask { await results.run { await self.handle($0) } }
            let dead = QueueConsumer(
                queue: context.transport.queue(named: names.deadLetterQueue(of: names.resultsQueue)), logger: logger,
                wait: receiveWait)
            group.addTask { await dead.run { await self.deadLettered($0) } }
        }
    }

    /// Handles one `TaskResult` message.
    public func handle(_ message: QueueMessage) async -> MessageDisposition {
        let result: Sdq_V1_TaskResult
        do {
            result = try MessageCodec.decode(Sdq_V1_TaskResult.self, body: message.body, attributes: message.attributes)
        } catch {
            logger.error("undecodable result message", metadata: ["error": "\(error)"])
            return .reject
        }
        let status: TaskStatus
        switch result.outcome {
        case .succeeded: status = .succeeded
        case .cancelled: status = .cancelled
        default: status = .failed
        }
        let finishedAt = EpochClock.nowMillis()
        return await finalise(taskID: result.id) { record in
            record.status = status
            if status == .succeeded { record.progress = 1 }
            record.images = result.images.map { image in
                ImageRecord(
                    key: image.object.key, contentType: image.object.contentType.isEmpty ? "image/png" : image.object.contentType,
                    width: Int(image.width), height: Int(image.height), seed: image.seed, sha256: image.object.sha256,
                    size: Int(image.object.size))
            }
            if status == .failed {
                let code = result.error.code.isEmpty ? "failed" : result.error.code
                record.error = TaskFailure(code: code, message: result.error.message)
            }
            if !result.worker.workerID.isEmpty { record.worker = result.worker.workerID }
            let t = result.timings
            func keep(_ current: Int64?, _ reported: Int64) -> Int64? { reported > 0 ? reported : current }
            record.timings.startedAt = keep(record.timings.startedAt, t.startedAtMs)
            record.timings.runtimeStartedAt = keep(record.timings.runtimeStartedAt, t.runtimeStartedAtMs)
            record.timings.runtimeFinishedAt = keep(record.timings.runtimeFinishedAt, t.runtimeFinishedAtMs)
            record.timings.finishedAt = finishedAt
        }
    }

    /// Handles a result that could not be processed and was dead-lettered.
    public func deadLettered(_ message: QueueMessage) async -> MessageDisposition {
        // A decodable result was dead-lettered by an outage, not by its content: apply it.
        if (try? MessageCodec.decode(Sdq_V1_TaskResult.self, body: message.body, attributes: message.attributes)) != nil {
            return await handle(message)
        }
        guard let taskID = message.attributes[MessageAttribute.taskID], !taskID.isEmpty else {
            logger.error("a result without a task id is in the dead-letter queue; leaving it for an operator")
            return .retry(after: .seconds(3600))
        }
        let finishedAt = EpochClock.nowMillis()
        return await finalise(taskID: taskID) { record in
            record.status = .failed
            record.error = TaskFailure(code: "dead_lettered", message: "the task's result could not be processed")
            record.timings.finishedAt = finishedAt
        }
    }

    private func finalise(taskID: String, _ mutate: @escaping @Sendable (inout TaskRecord) -> Void) async -> MessageDisposition {
        let store = context.transport.tasks
        do {
            let outcome = try await store.update(id: taskID, ifStatusIn: TaskStatus.nonTerminal, mutate)
            let record: TaskRecord
            switch outcome {
            case .applied(let updated):
                record = updated
                logger.info("task finished", metadata: ["task": "\(taskID)", "status": "\(updated.status.rawValue)"])
            case .conflict(let current):
                guard current.status.isTerminal else { return .retry(after: .seconds(1)) }
                record = current  // a duplicate or a result after a cancel: the first terminal state stands
            case .notFound:
                logger.warning("result for an unknown or expired task; dropping it", metadata: ["task": "\(taskID)"])
                return .delete
            }
            try await writeManifest(for: record)
            return .delete
        } catch {
            logger.warning("finalising failed; retrying", metadata: ["task": "\(taskID)", "error": "\(error)"])
            return .retry(after: .seconds(2))
        }
    }

    private func writeManifest(for record: TaskRecord) async throws(TransportError) {
        let key = Self.manifestKey(for: record.id)
        let objects = context.transport.objects
        let present = record.manifestKey != nil ? try await objects.exists(key: key) : false
        if !present {
            let bucket = objects.bucket
            let document = TaskDocument(record: record) { "s3://\(bucket)/\($0.key)" }
            try await objects.put(key: key, data: document.jsonData(pretty: true), contentType: "application/json")
        }
        if record.manifestKey == nil {
            _ = try await context.transport.tasks.update(id: record.id, ifStatusIn: [record.status]) { $0.manifestKey = key }
        }
    }
}
