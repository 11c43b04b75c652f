@testable import Dispatcher
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Routing that follows the model cache: among the pools of a task's family, one with the
/// checkpoint loaded, then one with it cached, then any — unless that pool is loaded more than
/// `slack` tasks beyond the least loaded one; with affinity off, load alone decides.
@Suite struct ModelAffinityTests {
    static let x = String(repeating: "a", count: 64), y = String(repeating: "b", count: 64), z = String(repeating: "c", count: 64)

    static func pools(affinity: Bool = true) throws -> PoolConfiguration {
        var pools = try PoolConfiguration(pools: [
            PoolSpec(name: "default", runtime: "emulator", models: ["emulator-v1"]),
            PoolSpec(name: "xl-a", runtime: "emulator", models: [], families: ["sdxl"]),
            PoolSpec(name: "xl-b", runtime: "emulator", models: [], families: ["sdxl"]),
            PoolSpec(name: "xl-c", runtime: "emulator", models: [], families: ["sdxl"]),
        ])
        pools.modelRouting = ModelRoutingSettings(affinity: affinity, slack: 4)
        return pools
    }

    static func task(digest: String, pool: String = "") -> Sdq_V1_GenerationTask {
        var task = Sdq_V1_GenerationTask()
        task.id = TaskID.generate()
        task.pool = pool
        task.family = "sdxl"
        var asset = Sdq_V1_ModelAsset()
        asset.name = "m-\(digest.prefix(4))"
        asset.kind = "checkpoint"
        asset.sha256 = digest
        asset.fileName = "\(asset.name).safetensors"
        task.assets = [asset]
        task.model = asset.name
        task.parameters.prompt = "affinity"
        return task
    }

    static func beat(_ pool: String, loaded: String? = nil, cached: [String] = [], now: Int64) -> WorkerHeartbeat {
        var heartbeat = WorkerHeartbeat(
            pool: pool, worker: "\(pool)-w", state: .idle, runtimeReachable: true, startedAt: now, seenAt: now, expiresAt: now + 30_000)
        heartbeat.loadedDigest = loaded.map(WorkerHeartbeat.digestPrefix)
        heartbeat.cached = cached.map(WorkerHeartbeat.digestPrefix)
        return heartbeat
    }

    @Test func tiersRankLoadedThenCachedThenFamilyWithinTheSlack() throws {
        let pools = try Self.pools().pools.filter { !$0.families.isEmpty }
        let (a, b, c) = (pools[0], pools[1], pools[2])
        func choose(_ entries: [(PoolSpec, Int, ModelAffinity.Tier)], affinity: Bool = true) -> String? {
            ModelAffinity.choose(entries.map { (pool: $0.0, load: $0.1, tier: $0.2) }, slack: 4, affinity: affinity)?.name
        }
        #expect(choose([(a, 0, .family), (b, 0, .cached), (c, 0, .loaded)]) == "xl-c")
        #expect(choose([(a, 0, .family), (b, 0, .cached), (c, 0, .family)]) == "xl-b")
        #expect(choose([(a, 2, .family), (b, 0, .family), (c, 1, .family)]) == "xl-b")
        // Loaded but 4 beyond the least loaded: still preferred; 5 beyond: not.
        #expect(choose([(a, 0, .family), (b, 4, .loaded)]) == "xl-b")
        #expect(choose([(a, 0, .family), (b, 5, .loaded)]) == "xl-a")
        // Without affinity only load counts (then configuration order).
        #expect(choose([(a, 1, .family), (b, 0, .family), (c, 0, .loaded)], affinity: false) == "xl-b")
    }

    @Test func theDispatcherSendsATaskWhereItsCheckpointIsWarm() async throws {
        let fixture = try await EmbeddedFixture.make(pools: try Self.pools())
        var dispatcher = Dispatcher(context: fixture.context, logger: testLogger())
        dispatcher.fleetRefresh = .zero
        let now = EpochClock.nowMillis()
        try await fixture.transport.tasks.recordHeartbeat(Self.beat("xl-a", now: now))
        try await fixture.transport.tasks.recordHeartbeat(Self.beat("xl-b", loaded: Self.x, cached: [Self.x], now: now))
        try await fixture.transport.tasks.recordHeartbeat(Self.beat("xl-c", cached: [Self.y], now: now))
        func route(_ task: Sdq_V1_GenerationTask) async throws -> String? {
            _ = try await fixture.transport.tasks.create(makeRecord(id: task.id, status: .queued))
            let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
            let message = QueueMessage(messageID: task.id, body: encoded.body, attributes: encoded.attributes, receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
            #expect(await dispatcher.route(message) == .delete)
            return try await fixture.transport.tasks.get(id: task.id)?.pool
        }
        #expect(try await route(Self.task(digest: Self.x)) == "xl-b")  // loaded there
        #expect(try await route(Self.task(digest: Self.y)) == "xl-c")  // cached there
        // Warm nowhere: its home pool by rendezvous hashing.
        let prefix = WorkerHeartbeat.digestPrefix(Self.z)
        let home = ["xl-a", "xl-b", "xl-c"].max { ModelAffinity.weight(prefix, $0) < ModelAffinity.weight(prefix, $1) }
        #expect(try await route(Self.task(digest: Self.z)) == home)
        // The next task of that checkpoint follows it.
        #expect(try await route(Self.task(digest: Self.z)) == home)
        // A named pool that serves the family is kept; one that does not fails the task.
        #expect(try await route(Self.task(digest: Self.x, pool: "xl-c")) == "xl-c")
        let refused = Self.task(digest: Self.x, pool: "default")
        _ = try await route(refused)
        let results = try await fixture.queue(fixture.context.names.resultsQueue).receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        let result = try MessageCodec.decode(Sdq_V1_TaskResult.self, body: try #require(results.first).body, attributes: [:])
        #expect(result.id == refused.id && result.error.code == "family_not_served")
    }

    @Test func checkpointsSpreadOverTheirHomePools() {
        // Rendezvous homes share 300 checkpoints out over three pools, each pool a fair part.
        var homes: [String: Int] = [:]
        for index in 0..<300 {
            let digest = WorkerHeartbeat.digestPrefix(sha256Hex(Data("checkpoint \(index)".utf8)))
            homes[["xl-a", "xl-b", "xl-c"].max { ModelAffinity.weight(digest, $0) < ModelAffinity.weight(digest, $1) }!, default: 0] += 1
        }
        #expect(homes.count == 3)
        #expect(homes.values.allSatisfy { (60...140).contains($0) }, "\(homes)")
    }

    @Test func withAffinityOffTheLeastLoadedPoolTakesIt() async throws {
        let fixture = try await EmbeddedFixture.make(pools: try Self.pools(affinity: false))
        var dispatcher = Dispatcher(context: fixture.context, logger: testLogger())
        dispatcher.fleetRefresh = .zero
        let now = EpochClock.nowMillis()
        try await fixture.transport.tasks.recordHeartbeat(Self.beat("xl-c", loaded: Self.x, now: now))
        var placed: [String] = []
        for _ in 0..<3 {
            let task = Self.task(digest: Self.x)
            _ = try await fixture.transport.tasks.create(makeRecord(id: task.id, status: .queued))
            let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
            _ = await dispatcher.route(QueueMessage(messageID: task.id, body: encoded.body, attributes: encoded.attributes, receiptHandle: "r", receiveCount: 1, sentAtMillis: 0))
            placed.append(try await fixture.transport.tasks.get(id: task.id)?.pool ?? "")
        }
        #expect(placed == ["xl-a", "xl-b", "xl-c"])
    }
}
