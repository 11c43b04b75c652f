import Foundation
import Logging
import SDQMessages
import SDQPlatform
import ServiceLifecycle
import Tracing

/// Finalises tasks and tells the people who asked.
///
/// For each `TaskResult` it moves the record to its terminal state exactly once, writes the result
/// manifest (`results/{id}/manifest.json`: the status document with `s3://` image URLs, the
/// request parameters and the seeds), then announces the task once: an SNS notification on the
/// notifications topic and, when the task has a callback, its `completed` webhook event (see
/// ``announce(_:)``). It also delivers webhooks (``WebhookDeliverer``) from the webhooks queue and,
/// on the embedded transport, sweeps expired objects hourly (S3 lifecycle rules do it on AWS).
///
/// Idempotent by construction: the terminal transition is conditional on a non-terminal status,
/// the manifest is derived from the stored terminal record under a fixed key, and the
/// announcement is claimed on the record before it is sent, so a result delivered twice, results
/// racing each other or a cancel, and concurrent result-writers leave one terminal state, one
/// manifest and one notification per task. Results that land in the results dead-letter queue
/// fail their task (`dead_lettered`).
public struct ResultWriter: Service {
    public let context: StackContext
    public let logger: Logger
    public var receiveWait: Duration
    /// Which webhook destinations may be called (`SDQ_WEBHOOK_ALLOW_PRIVATE`).
    public var webhookPolicy: OutboundURLPolicy
    /// `SDQ_PUBLIC_URL`: makes `status_url` in webhooks absolute.
    public var publicBaseURL: String?
    /// How often expired objects are swept (embedded transport).
    public var sweepInterval: Duration = .seconds(3600)
    /// Concurrent webhook consumers (a slow receiver holds only its own).
    public var webhookConsumers: Int = 4

    public init(
        context: StackContext, logger: Logger, receiveWait: Duration = .seconds(20),
        webhookPolicy: OutboundURLPolicy = OutboundURLPolicy(), publicBaseURL: String? = nil
    ) {
        self.context = context
        self.logger = logger
        self.receiveWait = receiveWait
        self.webhookPolicy = webhookPolicy
        self.publicBaseURL = publicBaseURL
    }

    /// The object key of a task's manifest.
    public static func manifestKey(for taskID: String) -> String { "results/\(taskID)/manifest.json" }

    /// The webhook deliverer this writer runs.
    public var deliverer: WebhookDeliverer {
        WebhookDeliverer(context: context, policy: webhookPolicy, logger: logger)
    }

    public func run() async throws {
        let names = context.names
        let transport = context.transport
        // Each consumer stops receiving on graceful shutdown and finishes what it holds.
        await withTaskGroup(of: Void.self) { group in
            let results = QueueConsumer(queue: transport.queue(named: names.resultsQueue), logger: logger, wait: receiveWait)
            group.addTask { await results.run { await self.handle($0) } }
            let dead = QueueConsumer(
                queue: transport.queue(named: names.deadLetterQueue(of: names.resultsQueue)), logger: logger, wait: receiveWait)
            group.addTask { await dead.run { await self.deadLettered($0) } }
            let deliverer = self.deliverer
            for _ in 0..<max(1, webhookConsumers) {
                let webhooks = QueueConsumer(
                    queue: transport.queue(named: names.webhooksQueue), logger: logger, batchSize: 1, wait: receiveWait)
                group.addTask { await webhooks.run { await deliverer.deliver($0) } }
            }
            let deadWebhooks = QueueConsumer(
                queue: transport.queue(named: names.deadLetterQueue(of: names.webhooksQueue)), logger: logger, wait: receiveWait)
            group.addTask { await deadWebhooks.run { await deliverer.deadLettered($0) } }
            group.addTask { await cancelWhenGracefulShutdown { await self.sweepLoop() } }
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
        return await withSpan("result-write", context: TraceCarrier.context(result.trace), ofKind: .consumer) { span in
            span.attributes["sdq.service"] = "result-writer"
            span.attributes["sdq.task_id"] = result.id
            return await apply(result)
        }
    }

    private func apply(_ result: Sdq_V1_TaskResult) async -> MessageDisposition {
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
            if result.attempt > 0 { record.attempts = Int(result.attempt) }
            if !result.pool.isEmpty, record.pool.isEmpty { record.pool = result.pool }
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
        SDQMetrics.deadLettered(queue: context.names.deadLetterQueue(of: context.names.resultsQueue))
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
            var record: TaskRecord
            switch outcome {
            case .applied(let updated):
                record = updated
                logger.info("task finished", metadata: ["task_id": "\(taskID)", "status": "\(updated.status.rawValue)"])
                if let submitted = updated.timings.submittedAt, let finished = updated.timings.finishedAt {
                    SDQMetrics.endToEnd(pool: updated.pool, outcome: updated.status.rawValue, .milliseconds(max(0, finished - submitted)))
                }
            case .conflict(let current):
                guard current.status.isTerminal else { return .retry(after: .seconds(1)) }
                record = current  // a duplicate or a result after a cancel: the first terminal state stands
            case .notFound:
                logger.warning("result for an unknown or expired task; dropping it", metadata: ["task_id": "\(taskID)"])
                return .delete
            }
            record = try await writeManifest(for: record)
            guard try await announce(record) else { return .retry(after: .seconds(5)) }
            return .delete
        } catch {
            logger.warning("finalising failed; retrying", metadata: ["task_id": "\(taskID)", "error": "\(error)"])
            return .retry(after: .seconds(2))
        }
    }

    private func writeManifest(for record: TaskRecord) async throws(TransportError) -> TaskRecord {
        let key = Self.manifestKey(for: record.id)
        let objects = context.transport.objects
        let present = record.manifestKey != nil ? try await objects.exists(key: key) : false
        if !present {
            let bucket = objects.bucket
            let document = TaskDocument(record: record, manifest: true) { "s3://\(bucket)/\($0.key)" }
            // A manifest that cannot be serialised fails the message (retried, then dead-lettered),
            // never a 0-byte manifest.
            let data: Data
            do { data = try document.encoded(pretty: true) } catch {
                throw TransportError(code: "document_unserialisable", message: "manifest of \(record.id): \(error)")
            }
            try await objects.put(key: key, data: data, contentType: "application/json")
        }
        guard record.manifestKey == nil else { return record }
        let outcome = try await context.transport.tasks.update(id: record.id, ifStatusIn: [record.status]) { $0.manifestKey = key }
        if case .applied(let updated) = outcome { return updated }
        return record
    }

    /// Deletes expired objects now and every ``sweepInterval`` (embedded; a no-op on AWS).
    private func sweepLoop() async {
        let ttl = Duration.seconds(context.pools.limits.taskTTLSeconds)
        let prefixes = context.topology.storage?.expiringPrefixes ?? []
        while !Task.isCancelled {
            do {
                let deleted = try await context.transport.sweepExpired(objectTTL: ttl, prefixes: prefixes)
                if deleted > 0 { logger.info("expired objects deleted", metadata: ["count": "\(deleted)"]) }
            } catch {
                logger.warning("sweeping expired objects failed", metadata: ["error": "\(error)"])
            }
            do { try await Task.sleep(for: sweepInterval) } catch { return }
        }
    }
}
