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
        await ChannelConsumer<Sdq_V1_TaskResult>(service: "result-writer", operation: "result-write", logger: logger)
            .handle(message) { result, _, _ in await apply(result) }
    }

    private func apply(_ result: Sdq_V1_TaskResult) async -> MessageDisposition {
        let status: TaskStatus
        switch result.outcome {
        case .succeeded: status = .succeeded
        case .cancelled: status = .cancelled
        default: status = .failed
        }
        let images = result.images.map { image in
            ImageRecord(
                key: image.object.key, contentType: image.object.contentType.isEmpty ? "image/png" : image.object.contentType,
                width: Int(image.width), height: Int(image.height), seed: image.seed, sha256: image.object.sha256,
                size: Int(image.object.size))
        }
        var error: TaskFailure?
        if status != .succeeded {
            error = TaskFailure(code: result.error.code.isEmpty ? status.rawValue : result.error.code, message: result.error.message)
        }
        let t = result.timings
        let conclusion = TaskConclusion(
            status: status, images: images, error: error, worker: result.worker.workerID, pool: result.pool,
            attempts: Int(result.attempt), startedAt: t.startedAtMs, runtimeStartedAt: t.runtimeStartedAtMs,
            runtimeFinishedAt: t.runtimeFinishedAtMs, finishedAt: EpochClock.nowMillis(),
            workerReceivedAt: t.workerReceivedAtMs, inputsReadyAt: t.inputsReadyAtMs, uploadedAt: t.uploadedAtMs)
        return await finalise(taskID: result.id, conclusion)
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
        let conclusion = TaskConclusion(
            status: .failed, error: TaskFailure(code: "dead_lettered", message: "the task's result could not be processed"),
            finishedAt: EpochClock.nowMillis())
        return await finalise(taskID: taskID, conclusion)
    }

    /// Ends the task and announces it: the terminal state, the manifest's key and the
    /// announcement claim in one conditional write (``TaskEvent/finished(_:claim:)``); a result
    /// for a task that already ended (a duplicate, a cancel's) claims the announcement if nobody
    /// made it yet. What happens next is the lifecycle's decision (``TaskLifecycle/afterClaim(_:claim:)``).
    private func finalise(taskID: String, _ conclusion: TaskConclusion) async -> MessageDisposition {
        let store = context.transport.tasks
        let claim = AnnouncementClaim(token: UUID().uuidString, at: EpochClock.nowMillis(), manifestKey: Self.manifestKey(for: taskID))
        do {
            var outcome = try await store.apply(.finished(conclusion, claim: claim), to: taskID)
            if case .applied(let updated) = outcome {
                logger.info("task finished", metadata: ["task_id": "\(taskID)", "status": "\(updated.status.rawValue)"])
                if let submitted = updated.timings.submittedAt, let finished = updated.timings.finishedAt {
                    SDQMetrics.endToEnd(pool: updated.pool, outcome: updated.status.rawValue, .milliseconds(max(0, finished - submitted)))
                }
            }
            for _ in 0..<3 {
                switch TaskLifecycle.afterClaim(outcome, claim: claim) {
                case .claimAnnouncement:
                    outcome = try await store.apply(.claimAnnouncement(claim), to: taskID)
                case .announce(let record):
                    try await announce(record, claim: claim)
                    return .delete
                case .retryLater:
                    return .retry(after: .seconds(5))
                default:
                    if case .notFound = outcome {
                        logger.warning("result for an unknown or expired task; dropping it", metadata: ["task_id": "\(taskID)"])
                    }
                    return .delete
                }
            }
            return .retry(after: .seconds(5))
        } catch {
            logger.warning("finalising failed; retrying", metadata: ["task_id": "\(taskID)", "error": "\(error)"])
            return .retry(after: .seconds(2))
        }
    }

    /// Writes the manifest of an ended task under its fixed key (the same document each time, so
    /// a takeover that writes it again changes nothing).
    func writeManifest(for record: TaskRecord) async throws(TransportError) {
        let objects = context.transport.objects
        let bucket = objects.bucket
        let document = TaskDocument(record: record, manifest: true) { "s3://\(bucket)/\($0.key)" }
        // A manifest that cannot be serialised fails the message (retried, then dead-lettered),
        // never a 0-byte manifest.
        let data: Data
        do { data = try document.encoded(pretty: true) } catch {
            throw TransportError(code: "document_unserialisable", message: "manifest of \(record.id): \(error)")
        }
        try await objects.put(key: Self.manifestKey(for: record.id), data: data, contentType: "application/json")
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
