import Foundation
import Logging
import SDQMessages
import SDQPlatform
import ServiceLifecycle
import Synchronization
import Tracing

/// Routes accepted tasks to worker pools and turns dead-lettered tasks into visible failures.
///
/// For each `GenerationTask` on the dispatch queue it:
/// 1. fails it if its deadline passed (if it is still queued);
/// 2. drops it (below) if the task is no longer queued: cancelled before a GPU was spent,
///    already dispatched by another message, running or ended;
/// 3. picks the pool: the named one, else a pool serving the requested model or its registered
///    checkpoint's family (among several, where the model is warm and the load is within the
///    slack, see ``ModelAffinity``), else the default pool; an unknown pool or a model the pool
///    does not serve fails the task with a clear error instead of queueing it;
/// 4. marks the record `dispatched` in one conditional write (queued, or a redelivery of the
///    message whose dispatch was recorded), noting its place in line
///    (``positionAtDispatch(pool:high:)``) for the status's `queue_position`, then sends it to
///    the pool's queue — the high-priority lane for `priority: high`, which workers drain first
///    (``PriorityLanes``). The lane sends of one received batch leave together (``SendRound``).
///
/// With fair share on (the pools file's `fair_share`, on by default), a lane is kept short and
/// the tasks beyond it are held, one line per tenant, and fed to it round-robin
/// (Dispatcher+FairShare.swift): a task's deadline and pool are settled when it is received,
/// step 4 (and the deadline again) when its turn comes.
///
/// Failures go to the results queue as a `TaskResult`, so the result-writer remains the one place
/// that finalises tasks. The dead-letter queues of the dispatch queue and of every pool queue are
/// watched: a message that lands there fails its task with code `dead_lettered`.
public struct Dispatcher: Service {
    public let context: StackContext
    public let logger: Logger
    /// Long-poll wait of each receive.
    public var receiveWait: Duration
    /// How often pool backlogs are sampled for the metrics.
    public var backlogInterval: Duration = .seconds(15)
    /// With fair share, how often a full lane's depth is read again while tasks wait for it.
    public var refillInterval: Duration = .milliseconds(500)
    /// With fair share, how long a held message stays invisible on the dispatch queue before it
    /// is renewed: long enough that renewals cost little (about one request per held task per
    /// two and a half minutes), short enough that a crashed dispatcher's tasks return within
    /// minutes.
    public var holdLease: Duration = .seconds(300)
    /// The lanes' depths as last sampled, for queue positions without a request per task.
    let depths = LaneDepths()
    /// How often the fleet's heartbeats are read again for routing by model (``ModelAffinity``).
    public var fleetRefresh: Duration = .seconds(2)
    let fleet = FleetView()
    let placements = RecentPlacements()
    let rotation = Rotation()

    public init(context: StackContext, logger: Logger, receiveWait: Duration = .seconds(20)) {
        self.context = context
        self.logger = logger
        self.receiveWait = receiveWait
    }

    public func run() async throws {
        let names = context.names
        // Each consumer stops receiving on graceful shutdown and finishes what it holds.
        await withTaskGroup(of: Void.self) { group in
            if context.pools.fairShare.isEnabled {
                // Lanes kept short, the rest held per tenant and fed round-robin (Dispatcher+FairShare).
                group.addTask { await self.runFairShare(self.context.pools.fairShare) }
            } else {
                let dispatch = QueueConsumer(
                    queue: context.transport.queue(named: names.dispatchQueue), logger: logger, wait: receiveWait)
                // The lane sends of one received batch leave together (one `SendMessageBatch` per lane).
                group.addTask { await dispatch.run(round: { await self.route($0, round: $1, participant: $2) }) }
            }
            let watched = [names.dispatchQueue] + context.pools.pools.flatMap { names.workerQueues($0.name) }
            group.addTask { await cancelWhenGracefulShutdown { await self.sampleBacklog() } }
            for source in watched {
                let dlq = QueueConsumer(
                    queue: context.transport.queue(named: names.deadLetterQueue(of: source)), logger: logger,
                    wait: receiveWait)
                group.addTask { await dlq.run { await self.deadLettered($0, from: source) } }
            }
        }
    }

    /// Routes one dispatch-queue message, in a consumer span under the API's (the task's trace).
    /// With a `round`, its lane send leaves with the other sends of the round.
    /// `chosen` is the pool picked when the message was received and held (fair share), so it
    /// is not looked up again.
    public func route(
        _ message: QueueMessage, round: SendRound? = nil, participant: Int = 0, chosen: PoolSpec? = nil
    ) async -> MessageDisposition {
        await ChannelConsumer<Sdq_V1_GenerationTask>(service: "dispatcher", operation: "dispatch", logger: logger)
            .handle(message) { task, _, span in
                let disposition = await route(task, message: message, round: round, participant: participant, chosen: chosen)
                span.attributes["sdq.pool"] = task.pool
                return disposition
            }
    }

    private func route(
        _ decoded: Sdq_V1_GenerationTask, message: QueueMessage, round: SendRound?, participant: Int, chosen: PoolSpec?
    ) async -> MessageDisposition {
        var task = decoded
        let now = EpochClock.nowMillis()
        let pool: PoolSpec
        switch await choosePool(for: task, now: now, chosen: chosen) {
        case .success(let resolved): pool = resolved
        case .failure(let error): return await failIfQueued(task, code: error.code, message: error.message)
        }
        task.pool = pool.name
        if task.model.isEmpty { task.model = pool.defaultModel }
        task.runtime = pool.runtimeKind.message
        task.attempt = UInt32(max(1, message.receiveCount))
        task.trace = TraceCarrier.current()  // the worker's span is a child of this one
        let high = task.priority == .high
        do {
            // The dispatch is recorded first, conditionally (queued, or this message's own earlier
            // attempt): one write instead of a read and a write, and a redelivered or duplicate
            // message for a task already on its way never reaches a lane twice.
            let position = await positionAtDispatch(pool: pool.name, high: high)
            let dispatched = TaskEvent.dispatched(
                pool: pool.name, model: task.model, at: now, queuePosition: position, message: message.messageID)
            switch TaskLifecycle.afterDispatch(try await context.transport.tasks.apply(dispatched, to: task.id)) {
            case .sendToLane:
                let lane = context.lane(pool: pool.name, high: high)
                if let round { try await lane.send(task, in: round, participant: participant) } else { try await lane.send(task) }
            case .forwardCancel(let record):
                return await forwardCancel(record, trace: task.trace)
            default:
                logger.debug("task not queued (running, ended, gone or already dispatched); dropping the message")
                return .delete
            }
        } catch {
            logger.warning("dispatch failed; retrying", metadata: ["task_id": "\(task.id)", "error": "\(error)"])
            return .retry(after: .seconds(2))
        }
        logger.debug("dispatched", metadata: ["task_id": "\(task.id)", "pool": "\(pool.name)"])
        return .delete
    }

    /// The pool `task` goes to, or why it cannot be dispatched: its deadline passed, or no pool
    /// fits (``resolvePool(for:in:)``). Among several pools serving its model, the one where it is
    /// warm (``ModelAffinity``) — unless `chosen` was already picked.
    func choosePool(for task: Sdq_V1_GenerationTask, now: Int64, chosen: PoolSpec? = nil) async -> Result<PoolSpec, RoutingError> {
        if task.deadlineMs > 0, now > task.deadlineMs {
            return .failure(RoutingError(code: "deadline_exceeded", message: "the task's deadline passed before it was dispatched"))
        }
        if let chosen { return .success(chosen) }
        let resolved = Self.resolvePool(for: task, in: context.pools)
        if task.pool.isEmpty, !task.family.isEmpty, case .success = resolved, let checkpoint = task.assets.first,
            let pool = await choosePool(forFamily: task.family, digest: checkpoint.sha256, now: now)
        {
            return .success(pool)
        }
        if task.pool.isEmpty, !task.model.isEmpty, case .success = resolved,
            let warm = await choosePool(among: context.pools.pools(servingModel: task.model), need: .model(task.model), now: now)
        {
            return .success(warm)
        }
        return resolved
    }

    /// Records every pool lane's depth (`sdq_backlog_messages`) every ``backlogInterval``.
    func sampleBacklog() async {
        while !Task.isCancelled {
            for pool in context.pools.pools {
                let lanes = context.workerQueue(pool: pool.name)
                for (lane, queue) in [("high", lanes.high), ("normal", lanes.normal)] {
                    if let depth = try? await queue.depth() {
                        SDQMetrics.backlog(pool: pool.name, lane: lane, visible: depth.visible, inFlight: depth.inFlight)
                        depths.record(queue.name, visible: depth.visible, inFlight: depth.inFlight)
                    }
                }
            }
            do { try await Task.sleep(for: backlogInterval) } catch { return }
        }
    }

    /// The task's place in line when it joins its pool's lane: the visible messages ahead of it
    /// (the high lane's, plus the normal lane's for a normal task), plus one. Read from the
    /// backlog sampler's last figures plus the tasks sent since (so a busy dispatcher makes no
    /// `GetQueueAttributes` per task; the figure can run a little high while workers drain the
    /// lane between samples), or from the queue when no recent sample exists. Nil when the depth
    /// cannot be read (the position is informative only, never a reason to hold a task back).
    func positionAtDispatch(pool: String, high: Bool) async -> Int? {
        let lanes = context.workerQueue(pool: pool)
        var ahead = 0
        for queue in high ? [lanes.high] : [lanes.high, lanes.normal] {
            if let estimate = depths.estimate(queue.name, maxAge: backlogInterval * 2) {
                ahead += estimate
            } else {
                guard let depth = try? await queue.depth() else { return nil }
                ahead += depth.visible
            }
        }
        depths.noteSent(high ? lanes.high.name : lanes.normal.name)
        return ahead + 1
    }

    /// A routing failure.
    public struct RoutingError: CodedError, Equatable {
        public let code: String
        public let message: String
    }

    /// The pool for `task`: by name, else by model (a registered checkpoint's family, or a fixed
    /// model), else the default pool.
    public static func resolvePool(for task: Sdq_V1_GenerationTask, in pools: PoolConfiguration) -> Result<PoolSpec, RoutingError> {
        if !task.family.isEmpty {
            let serving = pools.pools(servingFamily: task.family)
            if !task.pool.isEmpty {
                guard let pool = serving.first(where: { $0.name == task.pool }) else {
                    return .failure(RoutingError(code: "family_not_served", message: "pool \(task.pool) does not serve \(task.family) models"))
                }
                return .success(pool)
            }
            guard let pool = serving.first else {
                return .failure(RoutingError(code: "family_not_served", message: "no pool serves \(task.family) models"))
            }
            return .success(pool)
        }
        if !task.pool.isEmpty {
            guard let pool = pools.pool(named: task.pool) else {
                return .failure(RoutingError(code: "unknown_pool", message: "no pool named \(task.pool)"))
            }
            if !task.model.isEmpty, !pool.models.contains(task.model) {
                return .failure(RoutingError(code: "unknown_model", message: "pool \(pool.name) does not serve model \(task.model)"))
            }
            return .success(pool)
        }
        if !task.model.isEmpty {
            guard let pool = pools.pool(servingModel: task.model) else {
                return .failure(RoutingError(code: "unknown_model", message: "no pool serves model \(task.model)"))
            }
            return .success(pool)
        }
        return .success(pools.defaultPool)
    }

    /// Handles a message found on the dead-letter queue of `source`.
    public func deadLettered(_ message: QueueMessage, from source: String) async -> MessageDisposition {
        var taskID = message.attributes[MessageAttribute.taskID]
        if taskID == nil {
            taskID = try? MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes).id
        }
        guard let taskID, !taskID.isEmpty else {
            logger.error(
                "a message without a task id is in a dead-letter queue; leaving it for an operator",
                metadata: ["queue": "\(source)", "message_id": "\(message.messageID)"])
            return .retry(after: .seconds(3600))
        }
        SDQMetrics.deadLettered(queue: source)
        let attempts = context.pools.queues.maxReceiveCount
        var result = Sdq_V1_TaskResult.failure(
            taskID: taskID, code: "dead_lettered",
            message: "the task's message on \(source) could not be processed after \(attempts) attempts",
            pool: message.attributes[MessageAttribute.pool] ?? "")
        result.attempt = UInt32(attempts)
        result.trace = TraceCarrier.current()
        return await send(result)
    }

    /// Fails a task that cannot be dispatched — if it is still queued (a redelivered message of a
    /// task already on its way must not end it), else drops the message (forwarding a cancel's
    /// owed ending). The one read of the record on the dispatcher's path, and only on this one.
    private func failIfQueued(_ task: Sdq_V1_GenerationTask, code: String, message: String) async -> MessageDisposition {
        let record: TaskRecord?
        do { record = try await context.transport.tasks.get(id: task.id) } catch {
            logger.warning("task store unavailable; retrying", metadata: ["error": "\(error)"])
            return .retry(after: .seconds(2))
        }
        guard let record else { return .delete }
        guard record.status == .queued else {
            if case .forwardCancel(let record) = TaskLifecycle.onSkipped(record) { return await forwardCancel(record, trace: task.trace) }
            return .delete
        }
        return await fail(task, code: code, message: message)
    }

    private func fail(_ task: Sdq_V1_GenerationTask, code: String, message: String) async -> MessageDisposition {
        var result = Sdq_V1_TaskResult.failure(taskID: task.id, code: code, message: message, pool: task.pool)
        result.model = task.model
        result.trace = task.trace
        result.clientContext = task.clientContext
        return await send(result)
    }

    /// Sends a `cancelled` result for a cancelled task whose ending was not announced (the API's
    /// own result may have been lost): the result-writer ends it like any other, once.
    private func forwardCancel(_ record: TaskRecord, trace: Sdq_V1_TraceContext) async -> MessageDisposition {
        var result = Sdq_V1_TaskResult.cancelled(taskID: record.id, message: record.error?.message ?? "cancelled by the client")
        result.pool = record.pool
        result.trace = trace
        return await send(result)
    }

    private func send(_ result: Sdq_V1_TaskResult) async -> MessageDisposition {
        do {
            try await context.results.send(result)
            return .delete
        } catch {
            logger.warning("cannot send a result; retrying", metadata: ["task_id": "\(result.id)", "error": "\(error)"])
            return .retry(after: .seconds(2))
        }
    }
}

/// Each lane's visible depth as last sampled, and the tasks sent to it since.
final class LaneDepths: Sendable {
    private struct Sample {
        var visible: Int
        var inFlight: Int
        var at: ContinuousClock.Instant
        var sentSince: Int
    }
    private let samples = Mutex<[String: Sample]>([:])

    func record(_ lane: String, visible: Int, inFlight: Int) {
        samples.withLock { $0[lane] = Sample(visible: visible, inFlight: inFlight, at: .now, sentSince: 0) }
    }

    /// The messages workers held (received, not yet deleted) at the last sample.
    func inFlight(_ lane: String) -> Int {
        samples.withLock { $0[lane]?.inFlight ?? 0 }
    }

    func noteSent(_ lane: String) {
        samples.withLock { $0[lane]?.sentSince += 1 }
    }

    /// How long ago `lane` was last sampled.
    func age(_ lane: String) -> Duration? {
        samples.withLock { samples in samples[lane].map { ContinuousClock.now - $0.at } }
    }

    /// Messages waiting or held by workers at the last sample, plus what was sent since, when
    /// the sample is younger than `maxAge`.
    func load(_ lane: String, maxAge: Duration) -> Int? {
        samples.withLock { samples in
            guard let sample = samples[lane], ContinuousClock.now - sample.at <= maxAge else { return nil }
            return sample.visible + sample.inFlight + sample.sentSince
        }
    }

    /// The sampled depth plus what was sent since, when the sample is younger than `maxAge`.
    func estimate(_ lane: String, maxAge: Duration) -> Int? {
        samples.withLock { samples in
            guard let sample = samples[lane], ContinuousClock.now - sample.at <= maxAge else { return nil }
            return sample.visible + sample.sentSince
        }
    }
}
