import Foundation
import SDQPlatform

/// The fleet as the API shows it: workers from their heartbeats (``WorkerHeartbeat``) and each
/// pool's health with its evidence (``PoolHealth``).
extension APIHandler {
    /// `GET /v1/workers[?pool=]`: the workers with a live heartbeat. Which task a worker runs is
    /// shown to operator keys only (it names another tenant's task).
    func listWorkers(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        try Self.refuseUnknownParameters(request, known: ["pool"], of: "the worker list")
        let pool = request.query["pool"]
        if let pool, context.pools.pool(named: pool) == nil { throw .unknownPool(pool) }
        let heartbeats: [WorkerHeartbeat]
        do { heartbeats = try await context.transport.tasks.heartbeats(pool: pool) } catch { throw .unavailable("\(error)") }
        let workers = heartbeats.map { Self.json($0, showTask: tenant.role == .operator) }
        return .json(200, JSONValue.object(["workers": .array(workers)]).serialized())
    }

    /// `GET /v1/pools`: each pool with its models, queue, workers and health.
    func listPools(_ request: APIRequest) async throws(APIError) -> APIResponse {
        let heartbeats: [WorkerHeartbeat]
        do {
            heartbeats = try await context.transport.tasks.heartbeats(pool: nil, goneWithin: WorkerHeartbeat.retainedFor)
        } catch {
            throw .unavailable("\(error)")
        }
        let now = EpochClock.nowMillis()
        var pools: [JSONValue] = []
        for pool in context.pools.pools {
            var entry: [String: JSONValue] = [
                "name": .string(pool.name), "runtime": .string(pool.runtime), "models": .array(pool.models.map { .string($0) }),
            ]
            let queues = await context.queueDepths(pool: pool.name) { await depths.depth(of: $0) }
            if let depth = queues.normal {
                entry["queue"] = .object(["visible": .number(Double(depth.visible)), "in_flight": .number(Double(depth.inFlight))])
            }
            let records = heartbeats.filter { $0.pool == pool.name }
            let health = PoolHealth.assess(records, backlog: queues.backlog, deadLetters: queues.deadLetters, now: now)
            let mine = records.filter { $0.isLive(at: now) }
            entry["workers"] = .number(Double(health.workers))
            entry["ready_workers"] = .number(Double(health.readyWorkers))
            entry["backlog"] = .number(Double(health.backlog))
            entry["dead_letters"] = .number(Double(health.deadLetters))
            entry["loaded_models"] = .array(Set(mine.compactMap(\.loadedModel)).sorted().map(JSONValue.string))
            entry["gpu_busy_fraction"] = mine.isEmpty ? .null : .number(mine.map(\.gpuBusyFraction).reduce(0, +) / Double(mine.count))
            entry["health"] = .object([
                "status": .string(health.status.rawValue), "reason": .string(health.reason),
                "unreachable_workers": .array(health.unreachable.map(JSONValue.string)),
                "vanished_workers": .array(health.vanished.map(JSONValue.string)),
            ])
            pools.append(.object(entry))
        }
        return .json(200, JSONValue.object(["pools": .array(pools)]).serialized())
    }

    static func json(_ heartbeat: WorkerHeartbeat, showTask: Bool) -> JSONValue {
        .object([
            "pool": .string(heartbeat.pool), "worker": .string(heartbeat.worker), "state": .string(heartbeat.state.rawValue),
            "current_task": showTask ? heartbeat.currentTask.map(JSONValue.string) ?? .null : .null,
            "loaded_model": heartbeat.loadedModel.map(JSONValue.string) ?? .null,
            "runtime_reachable": .bool(heartbeat.runtimeReachable),
            "runtime_error": heartbeat.runtimeError.map(JSONValue.string) ?? .null,
            "gpu_busy_fraction": .number(heartbeat.gpuBusyFraction),
            "idle_gap_ms": heartbeat.idleGapMillis.map { .number(Double($0)) } ?? .null,
            "started_at": .number(Double(heartbeat.startedAt)), "seen_at": .number(Double(heartbeat.seenAt)),
            "loaded_sha256": heartbeat.loadedDigest.map(JSONValue.string) ?? .null,
            "cached": .array(heartbeat.cached.map(JSONValue.string)),
            "cache_bytes": heartbeat.cacheBytes.map { .number(Double($0)) } ?? .null,
            "cache_limit_bytes": heartbeat.cacheLimitBytes.map { .number(Double($0)) } ?? .null,
            "missing_models": .array(heartbeat.missingModels.map(JSONValue.string)),
        ])
    }
}
