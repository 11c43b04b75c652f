import Foundation
@testable import InferenceService
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// The worker's heartbeat (``WorkerHeartbeat``): what it says, measured from the runtime's own
/// windows, and that the running worker writes it.
@Suite struct WorkerHeartbeatTests {
    @Test func busyFractionAndIdleGapComeFromTheRuntimesWindowsOfTheLastMinute() {
        let activity = WorkerActivity()
        let t0 = activity.startedAt
        #expect(activity.heartbeat(pool: "p", worker: "w", now: t0 + 10, lifetime: 30_000).state == .starting)
        activity.ready()
        activity.began(task: "a", model: "sdxl", at: t0 + 1000)
        activity.ended(task: "a", start: t0 + 1000, end: t0 + 3000, error: nil)
        activity.began(task: "b", model: "sdxl", at: t0 + 3500)
        activity.ended(task: "b", start: t0 + 3500, end: t0 + 5500, error: nil)
        var beat = activity.heartbeat(pool: "p", worker: "w", now: t0 + 10_000, lifetime: 30_000)
        #expect(beat.state == .idle && beat.currentTask == nil && beat.loadedModel == "sdxl")
        #expect(abs(beat.gpuBusyFraction - 0.4) < 1e-9)  // 4 s of the 10 s since start
        #expect(beat.idleGapMillis == 500)
        #expect(beat.expiresAt == t0 + 40_000 && beat.seenAt == t0 + 10_000)
        // A task on the runtime counts up to now; a minute on, the old windows no longer count.
        activity.began(task: "c", model: "juggernaut", at: t0 + 100_000)
        beat = activity.heartbeat(pool: "p", worker: "w", now: t0 + 130_000, lifetime: 30_000)
        #expect(beat.state == .running && beat.currentTask == "c" && beat.loadedModel == "juggernaut")
        #expect(abs(beat.gpuBusyFraction - 0.5) < 1e-9 && beat.idleGapMillis == nil)
        // An unreachable runtime is said, until a task succeeds again.
        activity.ended(task: "c", start: t0 + 100_000, end: t0 + 130_000, error: RuntimeError(code: "runtime_unavailable", message: "refused", retryable: true))
        beat = activity.heartbeat(pool: "p", worker: "w", now: t0 + 130_001, lifetime: 30_000)
        #expect(!beat.runtimeReachable && beat.runtimeError == "runtime_unavailable: refused")
        activity.ended(task: "d", start: t0 + 131_000, end: t0 + 132_000, error: nil)
        activity.drain()
        beat = activity.heartbeat(pool: "p", worker: "w", now: t0 + 132_001, lifetime: 30_000)
        #expect(beat.runtimeReachable && beat.runtimeError == nil && beat.state == .draining)
    }

    @Test func aRunningWorkerWritesItsHeartbeatAndSaysDrainingLast() async throws {
        let harness = try await InferenceWorkerTests.Harness.make()
        var configuration = InferenceConfiguration(pool: "default", workerID: "worker-hb", receiveWait: .milliseconds(200))
        configuration.fleetHeartbeatInterval = .milliseconds(100)
        let worker = InferenceWorker(
            context: harness.fixture.context, runtime: EmulatorRuntime(stepDelay: .milliseconds(25)), configuration: configuration,
            logger: testLogger())
        let store = harness.fixture.transport.tasks
        // The newest heartbeat, even one that expired a moment ago (a loaded machine may write
        // them later than their 300 ms lifetime; the last, draining, one lives one interval).
        @Sendable func beat() async throws -> WorkerHeartbeat? {
            try await store.heartbeats(pool: "default", goneWithin: 60_000).first { $0.worker == "worker-hb" }
        }
        try await whileRunning([worker]) { _ in
            #expect(await eventually { try await beat()?.state == .idle })
            #expect(try await beat()?.runtimeReachable == true)
            let task = try await harness.enqueue(steps: 40)
            #expect(await eventually { try await beat()?.currentTask == task.id })
            #expect(try await beat()?.state == .running)
            #expect(await eventually { try await harness.status(task.id) == .running })
            #expect(await eventually { try await beat()?.state == .idle })
            // The result is sent after the runtime is done (the images are stored first).
            let results = Accumulator<Sdq_V1_TaskResult>()
            #expect(await eventually {
                await results.append(try await harness.results())
                return await results.items.map(\.id) == [task.id]
            })
            let idle = try #require(try await beat())
            #expect(idle.loadedModel == "emulator-v1" && idle.gpuBusyFraction > 0 && idle.currentTask == nil)
        }
        #expect(try await beat()?.state == .draining)
    }

    /// The runtime behind a ready worker dies: its next task fails `runtime_unavailable` and the
    /// heartbeat says the runtime does not answer (pool health then says `crash_looping`).
    @Test func aDeadRuntimeShowsInTheHeartbeat() async throws {
        let harness = try await InferenceWorkerTests.Harness.make()
        var configuration = InferenceConfiguration(pool: "default", workerID: "worker-dead", receiveWait: .milliseconds(200))
        configuration.fleetHeartbeatInterval = .milliseconds(100)
        let worker = InferenceWorker(
            context: harness.fixture.context, runtime: DeadRuntime(), configuration: configuration, logger: testLogger())
        let store = harness.fixture.transport.tasks
        // The newest heartbeat, even one that expired a moment ago (a loaded machine may write
        // them later than their 300 ms lifetime).
        @Sendable func beat() async throws -> WorkerHeartbeat? {
            try await store.heartbeats(pool: "default", goneWithin: 60_000).first { $0.worker == "worker-dead" }
        }
        try await whileRunning([worker]) { _ in
            #expect(await eventually { try await beat()?.state == .idle })
            #expect(await eventually { try await beat()?.runtimeReachable == true })
            try await harness.enqueue()
            #expect(await eventually { try await beat()?.runtimeReachable == false })
            #expect(try await beat()?.runtimeError?.hasPrefix("runtime_unavailable:") == true)
            let latest = try #require(try await beat())
            let health = PoolHealth.assess([latest], backlog: 0, deadLetters: 0, now: latest.seenAt)
            #expect(health.status == .crashLooping && health.unreachable == ["worker-dead"])
        }
    }
}

/// A runtime whose process is gone: every call fails to connect.
struct DeadRuntime: RuntimeBackend {
    let name = "dead"
    func run(_ job: RuntimeJob, window: RuntimeWindow, progress: @escaping @Sendable (Double) async -> Bool)
        async throws(RuntimeError) -> [RuntimeImage]
    {
        throw RuntimeError(code: "runtime_unavailable", message: "runtime request failed: connection refused", retryable: true)
    }
}
