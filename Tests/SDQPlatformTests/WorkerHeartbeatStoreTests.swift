import Foundation
import SDQPlatform
import SDQTestSupport
import Testing

/// Worker heartbeats on both stores: one record per worker, replaced by each beat, listed by
/// pool and worker, gone once expired.
@Suite struct WorkerHeartbeatStoreTests {
    @Test(arguments: TransportKind.available)
    func heartbeatsAreReplacedListedByPoolAndExpire(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let now = EpochClock.nowMillis()
        func beat(_ pool: String, _ worker: String, _ state: WorkerHeartbeat.State, expiresIn: Int64 = 30_000) -> WorkerHeartbeat {
            WorkerHeartbeat(
                pool: pool, worker: worker, state: state, currentTask: state == .running ? "task-1" : nil, loadedModel: "m",
                runtimeReachable: true, gpuBusyFraction: 0.5, idleGapMillis: 40, startedAt: now - 1000, seenAt: now,
                expiresAt: now + expiresIn)
        }
        try await store.recordHeartbeat(beat("sdxl", "w2", .idle))
        try await store.recordHeartbeat(beat("sdxl", "w1", .starting))
        try await store.recordHeartbeat(beat("comfy", "w9", .idle))
        try await store.recordHeartbeat(beat("comfy", "gone", .idle, expiresIn: -1))
        // The next beat of w1 replaces its record.
        try await store.recordHeartbeat(beat("sdxl", "w1", .running))
        let all = try await store.heartbeats(pool: nil)
        #expect(all.map { "\($0.pool)/\($0.worker)" } == ["comfy/w9", "sdxl/w1", "sdxl/w2"])
        #expect(all[1] == beat("sdxl", "w1", .running))
        #expect(try await store.heartbeats(pool: "sdxl").map(\.worker) == ["w1", "w2"])
        #expect(try await store.heartbeats(pool: "nope").isEmpty)
        // The expired one is still there for churn, within the window asked for.
        #expect(try await store.heartbeats(pool: "comfy", goneWithin: 60_000).map(\.worker) == ["gone", "w9"])
        #expect(try await store.heartbeats(pool: "comfy", goneWithin: 0).map(\.worker) == ["w9"])
    }
}
