import Foundation
import SDQPlatform

/// `sdq doctor`'s checks of the fleet, on any transport: each pool's health as `GET /v1/pools`
/// judges it (``PoolHealth``), workers that missed their heartbeats or never became ready, and,
/// where no resource check covers them, the dead-letter queues.
public struct FleetChecks: Sendable {
    let context: StackContext
    /// A worker not seen for this long has missed at least two heartbeats (they come every 10 s).
    public var staleAfter: Int64 = 25_000
    /// A worker still starting after this long has a runtime that never answered.
    public var stuckStartingAfter: Int64 = 300_000
    /// Whether to check the dead-letter queues here (the AWS resource checks already do).
    public var includeDeadLetters: Bool

    public init(context: StackContext, includeDeadLetters: Bool) {
        self.context = context
        self.includeDeadLetters = includeDeadLetters
    }

    public func run(now: Int64 = EpochClock.nowMillis()) async -> [StackCheck] {
        var checks: [StackCheck] = []
        let heartbeats: [WorkerHeartbeat]
        do {
            heartbeats = try await context.transport.tasks.heartbeats(pool: nil, goneWithin: WorkerHeartbeat.retainedFor)
        } catch {
            return [
                .failed(
                    "fleet", context.names.tasksTable, "heartbeats readable", "\(error)",
                    fix: "the identity needs read access to the task table (dynamodb:Query on its index)")
            ]
        }
        if includeDeadLetters { checks += await deadLetters() }
        for pool in context.pools.pools {
            let queues = await context.queueDepths(pool: pool.name) { try? await $0.depth() }
            let records = heartbeats.filter { $0.pool == pool.name }
            let health = PoolHealth.assess(records, backlog: queues.backlog, deadLetters: queues.deadLetters, now: now)
            checks.append(Self.check(pool: pool.name, health))
            if health.status != .crashLooping, let gone = health.vanished.first {
                checks.append(
                    StackCheck(
                        area: "fleet", subject: "\(pool.name)/\(gone)", check: "went away", status: .warning,
                        detail: "its heartbeats stopped without it draining",
                        fix: "look at its node or task: a lost node, an OOM kill or a crash (a graceful stop says draining)"))
            }
            for heartbeat in records where heartbeat.isLive(at: now) {
                if now - heartbeat.seenAt > staleAfter, heartbeat.state != .draining {
                    checks.append(
                        StackCheck(
                            area: "fleet", subject: "\(pool.name)/\(heartbeat.worker)", check: "heartbeat", status: .warning,
                            detail: "last seen \((now - heartbeat.seenAt) / 1000) s ago (\(heartbeat.state.rawValue))",
                            fix: "the worker stopped without draining: look at its node or task (spot interruption, OOM kill, crash)"))
                } else if !heartbeat.missingModels.isEmpty {
                    // Waiting for required models: failed once it has waited as long as a stuck runtime.
                    let waited = now - heartbeat.startedAt
                    checks.append(
                        StackCheck(
                            area: "fleet", subject: "\(pool.name)/\(heartbeat.worker)", check: "required models",
                            status: waited > stuckStartingAfter ? .failed : .warning,
                            detail: "takes no task until \(heartbeat.missingModels.joined(separator: ", ")) are present and verified: "
                                + (heartbeat.runtimeError ?? "fetching"),
                            fix: "register them (sdq models add NAME …) or correct the pool's required_models; "
                                + "GET /v1/workers shows missing_models"))
                } else if heartbeat.state == .starting, now - heartbeat.startedAt > stuckStartingAfter {
                    checks.append(
                        .failed(
                            "fleet", "\(pool.name)/\(heartbeat.worker)", "runtime ready",
                            "starting for \((now - heartbeat.startedAt) / 60_000) min: \(heartbeat.runtimeError ?? "the runtime never answered")",
                            fix: "look at the runtime container's log: models still syncing, no GPU, or a crash at start"))
                }
            }
            checks += Self.cacheChecks(pool: pool, records.filter { $0.isLive(at: now) && $0.state != .draining })
        }
        return checks
    }

    /// Each live worker's model cache, for pools that serve registered models: how full it is.
    static func cacheChecks(pool: PoolSpec, _ live: [WorkerHeartbeat]) -> [StackCheck] {
        guard !pool.families.isEmpty else { return [] }
        return live.compactMap { heartbeat in
            let subject = "\(pool.name)/\(heartbeat.worker)"
            guard let used = heartbeat.cacheBytes, let limit = heartbeat.cacheLimitBytes, limit > 0 else {
                guard heartbeat.state != .starting else { return nil }
                return StackCheck(
                    area: "fleet", subject: subject, check: "model cache", status: .warning,
                    detail: "the worker reports no model cache: tasks naming registered models fail there (model_cache_unconfigured)",
                    fix: "set SDQ_MODEL_DIR on the inference-service to a volume shared with the runtime")
            }
            let gib = { (bytes: Int64) in String(format: "%.1f GiB", Double(bytes) / 1_073_741_824) }
            return StackCheck(
                area: "fleet", subject: subject, check: "model cache", status: .ok,
                detail: "\(gib(used)) of \(gib(limit)), \(heartbeat.cached.count) checkpoint(s) cached"
                    + (heartbeat.loadedModel.map { ", \($0) loaded" } ?? ""))
        }
    }

    static func check(pool: String, _ health: PoolHealth) -> StackCheck {
        let check = "health"
        switch health.status {
        case .healthy, .scaledToZero:
            return .ok("fleet", pool, check, "\(health.status.rawValue): \(health.reason)")
        case .capacityShort:
            return .failed(
                "fleet", pool, check, "capacity_short: \(health.reason)",
                fix: "check the pool's scaling (KEDA ScaledObject or ECS step policy), GPU quota and spot capacity in the region; `kubectl describe` pending pods")
        case .crashLooping:
            return .failed(
                "fleet", pool, check, "crash_looping: \(health.reason)",
                fix: "look at the runtime container's log and restarts; a runtime needs its models and GPU memory before it answers")
        case .degraded:
            return .failed(
                "fleet", pool, check, "degraded: \(health.reason)",
                fix: StackCheck.deadLetterFix)
        }
    }

    /// Each dead-letter queue's depth (embedded stacks; the AWS checks read them with the rest).
    func deadLetters() async -> [StackCheck] {
        var checks: [StackCheck] = []
        for name in context.topology.queues.compactMap(\.deadLetterQueue) {
            guard let depth = try? await context.transport.queue(named: name).depth() else {
                checks.append(.failed("queues", name, "dead letters", "cannot read its depth", fix: "check the data directory"))
                continue
            }
            let count = depth.visible + depth.inFlight
            checks.append(
                count == 0
                    ? .ok("queues", name, "dead letters", "empty")
                    : .failed(
                        "queues", name, "dead letters", "\(count) messages",
                        fix: StackCheck.deadLetterFix))
        }
        return checks
    }
}
