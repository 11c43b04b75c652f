@testable import ApiLambda
import Foundation
import SDQPlatform
import SDQTestSupport
import Testing

/// `GET /v1/workers` and the health in `GET /v1/pools`, from heartbeats written to the store and
/// the pool's real queues.
@Suite struct FleetTests {
    static let keyFile = """
        keys:
          - {name: ops, key: k-ops, role: operator}
          - {name: alice, key: k-alice}
        """

    static func auth(_ key: String) -> [String: String] { ["Authorization": "Bearer \(key)"] }

    static func beat(
        _ worker: String, pool: String = "default", state: WorkerHeartbeat.State = .idle, reachable: Bool = true, error: String? = nil
    ) -> WorkerHeartbeat {
        let now = EpochClock.nowMillis()
        return WorkerHeartbeat(
            pool: pool, worker: worker, state: state, currentTask: state == .running ? "t-1" : nil, loadedModel: "emulator-v1",
            runtimeReachable: reachable, runtimeError: error, gpuBusyFraction: 0.25, idleGapMillis: 80, startedAt: now - 5000,
            seenAt: now, expiresAt: now + 30_000)
    }

    static func health(_ harness: APIHandlerTests.Harness, pool: String = "default") async throws -> (String, JSONValue) {
        let response = await harness.get("/v1/pools", headers: auth("k-alice"))
        #expect(response.status == 200)
        let pools = try #require(try JSONValue.parse(response.body)["pools"]?.arrayValue)
        let entry = try #require(pools.first { $0["name"]?.stringValue == pool })
        return (try #require(entry["health"]?["status"]?.stringValue), entry)
    }

    @Test func workersAreListedAndOnlyOperatorsSeeTheirTasks() async throws {
        let harness = try await APIHandlerTests.Harness.make(keyFile: Self.keyFile)
        try await harness.fixture.transport.tasks.recordHeartbeat(Self.beat("w1", state: .running))
        try await harness.fixture.transport.tasks.recordHeartbeat(Self.beat("w2", pool: "sdxl"))
        let forClient = try JSONValue.parse(await harness.get("/v1/workers", headers: Self.auth("k-alice")).body)
        let workers = try #require(forClient["workers"]?.arrayValue)
        #expect(workers.compactMap { $0["worker"]?.stringValue } == ["w1", "w2"])
        #expect(workers[0]["state"]?.stringValue == "running" && workers[0]["current_task"] == .null)
        #expect(workers[0]["gpu_busy_fraction"]?.numberValue == 0.25 && workers[0]["idle_gap_ms"]?.numberValue == 80)
        let forOperator = try JSONValue.parse(await harness.get("/v1/workers?pool=default", headers: Self.auth("k-ops")).body)
        #expect(forOperator["workers"]?.arrayValue?.map { $0["current_task"]?.stringValue } == ["t-1"])
        let unknown = await harness.get("/v1/workers?pool=nope", headers: Self.auth("k-ops"))
        #expect(unknown.status == 422 && APIHandlerTests.error(unknown) == ("unknown_pool", "pool"))
        #expect(await harness.get("/v1/workers?pol=x", headers: Self.auth("k-ops")).status == 400)
        #expect(await harness.get("/v1/workers").status == 401)
    }

    @Test func poolHealthFollowsTheEvidence() async throws {
        let harness = try await APIHandlerTests.Harness.make(keyFile: Self.keyFile)
        let store = harness.fixture.transport.tasks
        let names = harness.fixture.context.names
        // Nothing at all.
        #expect(try await Self.health(harness).0 == "scaled_to_zero")
        // A task waits and no worker takes it. (Depths are cached for a second.)
        try await harness.fixture.queue(names.poolQueue("default")).send(body: "x", attributes: [:])
        try await Task.sleep(for: .milliseconds(1100))
        var (status, entry) = try await Self.health(harness)
        #expect(status == "capacity_short" && entry["backlog"]?.numberValue == 1 && entry["workers"]?.numberValue == 0)
        // A worker still starting does not help.
        try await store.recordHeartbeat(Self.beat("w1", state: .starting, reachable: false, error: "waiting for the runtime to answer"))
        #expect(try await Self.health(harness).0 == "capacity_short")
        // Ready: healthy while it works the backlog.
        try await store.recordHeartbeat(Self.beat("w1", state: .running))
        (status, entry) = try await Self.health(harness)
        #expect(status == "healthy" && entry["ready_workers"]?.numberValue == 1 && entry["loaded_models"]?.arrayValue == [.string("emulator-v1")])
        // Its runtime dies.
        try await store.recordHeartbeat(Self.beat("w1", state: .idle, reachable: false, error: "runtime_unavailable: connection refused"))
        (status, entry) = try await Self.health(harness)
        #expect(status == "crash_looping" && entry["health"]?["unreachable_workers"]?.arrayValue == [.string("w1")])
        #expect(entry["health"]?["reason"]?.stringValue?.contains("connection refused") == true)
        // Back, the backlog gone, a dead letter left.
        try await store.recordHeartbeat(Self.beat("w1"))
        let lane = harness.fixture.queue(names.poolQueue("default"))
        for message in try await lane.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil) {
            try await lane.delete(receiptHandle: message.receiptHandle)
        }
        try await harness.fixture.queue(names.deadLetterQueue(of: names.poolQueue("default"))).send(body: "y", attributes: [:])
        try await Task.sleep(for: .milliseconds(1100))
        (status, entry) = try await Self.health(harness)
        #expect(status == "degraded" && entry["dead_letters"]?.numberValue == 1)
        // The other pool has its own.
        #expect(try await Self.health(harness, pool: "sdxl").0 == "scaled_to_zero")
    }
}

/// Workers that come and go: two whose heartbeats stopped without draining make a crash loop;
/// workers that drained, and ones gone longer than the store keeps them, do not.
@Suite struct FleetChurnTests {
    static func gone(_ worker: String, state: WorkerHeartbeat.State = .idle, expiredAgo: Int64) -> WorkerHeartbeat {
        let now = EpochClock.nowMillis()
        return WorkerHeartbeat(
            pool: "default", worker: worker, state: state, loadedModel: "emulator-v1", runtimeReachable: true,
            startedAt: now - expiredAgo - 40_000, seenAt: now - expiredAgo - 30_000, expiresAt: now - expiredAgo)
    }

    @Test func workersThatVanishMakeACrashLoop() async throws {
        let harness = try await APIHandlerTests.Harness.make(keyFile: FleetTests.keyFile)
        let store = harness.fixture.transport.tasks
        // One drained and one long gone: nothing to see.
        try await store.recordHeartbeat(Self.gone("w-drained", state: .draining, expiredAgo: 60_000))
        try await store.recordHeartbeat(Self.gone("w-old", expiredAgo: WorkerHeartbeat.retainedFor + 60_000))
        var (status, entry) = try await FleetTests.health(harness)
        #expect(status == "scaled_to_zero" && entry["health"]?["vanished_workers"]?.arrayValue == [], "\(entry)")
        // One vanished: a lost node, maybe; not yet a loop.
        try await store.recordHeartbeat(Self.gone("w-1", expiredAgo: 120_000))
        (status, entry) = try await FleetTests.health(harness)
        #expect(status == "scaled_to_zero" && entry["health"]?["vanished_workers"]?.arrayValue == [.string("w-1")])
        // A second: a crash loop, even with a live worker beside them.
        try await store.recordHeartbeat(Self.gone("w-2", expiredAgo: 10_000))
        try await store.recordHeartbeat(FleetTests.beat("w-3"))
        (status, entry) = try await FleetTests.health(harness)
        #expect(status == "crash_looping" && entry["workers"]?.numberValue == 1, "\(entry)")
        #expect(Set(entry["health"]?["vanished_workers"]?.arrayValue?.compactMap(\.stringValue) ?? []) == ["w-1", "w-2"])
        #expect(entry["health"]?["reason"]?.stringValue?.contains("without draining") == true)
        // The worker list shows the live one only.
        let listed = try JSONValue.parse(await harness.get("/v1/workers", headers: FleetTests.auth("k-ops")).body)
        #expect(listed["workers"]?.arrayValue?.compactMap { $0["worker"]?.stringValue } == ["w-3"])
    }
}

/// A pool whose only workers are draining, with nothing waiting, has scaled to zero.
@Suite struct FleetDrainingTests {
    @Test func drainingWorkersAreNotCapacity() {
        let now = EpochClock.nowMillis()
        let draining = WorkerHeartbeat(
            pool: "default", worker: "w-out", state: .draining, runtimeReachable: true, startedAt: now - 60_000, seenAt: now,
            expiresAt: now + 10_000)
        #expect(PoolHealth.assess([draining], backlog: 0, deadLetters: 0, now: now).status == .scaledToZero)
        // With tasks waiting, no ready worker is capacity short.
        #expect(PoolHealth.assess([draining], backlog: 3, deadLetters: 0, now: now).status == .capacityShort)
    }
}
