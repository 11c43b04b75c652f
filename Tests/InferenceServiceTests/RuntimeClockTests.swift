import AsyncHTTPClient
import Foundation
@testable import InferenceService
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// sdq's runtime timings against the runtime's own clock, and the next request waiting in the
/// runtime's queue: the emulator server logs when each named generation (`force_task_id`) began
/// and ended on its "GPU" (`GET /internal/log`).
@Suite struct RuntimeClockTests {
    struct PeerRun: Sendable {
        var task: String
        var start: Double
        var end: Double
        var interrupted: Bool
        var progress: Double
    }

    static func peerLog(_ base: String, client: HTTPClient) async throws -> [PeerRun] {
        let response = try await client.execute(HTTPClientRequest(url: base + "/internal/log"), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard case .array(let runs) = try JSONValue.parse(Data(body.readableBytesView)) else { return [] }
        return runs.compactMap { run in
            guard let task = run["task"]?.stringValue, let start = run["start"]?.numberValue, let end = run["end"]?.numberValue else { return nil }
            return PeerRun(
                task: task, start: start, end: end, interrupted: run["interrupted"] == .bool(true), progress: run["progress"]?.numberValue ?? 0)
        }
    }

    /// Every stage time of a task is in order, and sdq's runtime window agrees with the runtime's
    /// own: the first task's window holds the peer's (the request went out before the GPU began,
    /// the answer came after it ended), every window is within a few milliseconds of the peer's,
    /// and the later tasks waited in the runtime's queue (their request arrived before the task
    /// ahead ended).
    @Test func theRuntimeWindowIsTheRuntimesOwnAndEveryStageIsInOrder() async throws {
        let harness = try await InferenceWorkerTests.Harness.make()
        try await withEmulatorServer(stepDelay: .milliseconds(10)) { base in
            try await Self.withClient { client in
            let backend = SDWebUIBackend(baseURL: base, client: client, progressInterval: .milliseconds(20))
            var tasks: [Sdq_V1_GenerationTask] = []
            for seed in 1...4 { tasks.append(try await harness.enqueue(steps: 8, seed: Int64(seed))) }
            let expected = tasks.count
            let results = try await whileRunning([harness.worker(stepDelay: .zero, runtime: backend)]) { _ in
                let collected = Accumulator<Sdq_V1_TaskResult>()
                _ = await eventually(timeout: .seconds(20)) {
                    await collected.append(try await harness.results())
                    return await collected.count >= expected
                }
                return await collected.items
            }
            #expect(results.count == tasks.count)
            let peer = try await Self.peerLog(base, client: client)
            let ordered = results.sorted { $0.timings.runtimeStartedAtMs < $1.timings.runtimeStartedAtMs }
            for (index, result) in ordered.enumerated() {
                let t = result.timings
                #expect(result.outcome == .succeeded)
                let stages = [
                    t.submittedAtMs, t.workerReceivedAtMs, t.inputsReadyAtMs, t.startedAtMs, t.runtimeStartedAtMs,
                    t.runtimeFinishedAtMs, t.uploadedAtMs,
                ]
                #expect(stages.allSatisfy { $0 > 0 }, "every stage is stamped: \(stages)")
                #expect(stages == stages.sorted(), "stages in order: \(stages)")
                let run = try #require(peer.first { $0.task.hasPrefix("sdq-\(result.id)-") }, "the runtime saw task \(result.id)")
                let (start, end) = (Double(t.runtimeStartedAtMs), Double(t.runtimeFinishedAtMs))
                // Near each other even on a 2-core machine busy with the rest of the suite, where an
                // answer can wait most of a second for a thread (the benchmark holds the close
                // figures); whole milliseconds on sdq's side: one of slack below.
                #expect(abs(run.start - start) < 1000 && abs(run.end - end) < 1000, "sdq \(start)…\(end), runtime \(run.start)…\(run.end)")
                #expect(end + 1 >= run.end, "the answer came after the runtime ended")
                if index == 0 { #expect(start <= run.start + 1, "the first request went out before the runtime began") }
                if index > 0 {
                    // Waiting in the runtime's queue: it began once the task ahead ended, not later
                    // than sdq could have asked.
                    let ahead = try #require(peer.first { $0.task.hasPrefix("sdq-\(ordered[index - 1].id)-") })
                    #expect(run.start >= ahead.end - 0.001)
                    #expect(start + 1 >= ahead.end, "sdq's window leaves out the time spent waiting in the runtime's queue")
                    #expect(start >= Double(ordered[index - 1].timings.runtimeFinishedAtMs) - 1, "sdq's windows do not overlap")
                }
            }
            }
        }
    }

    /// A request waiting in the runtime's queue behind another, then cancelled, is stopped as it
    /// starts: the generation ahead of it runs every step, uninterrupted.
    @Test func aCancelledRequestWaitingInTheRuntimesQueueNeverStopsTheOneAhead() async throws {
        try await withEmulatorServer(stepDelay: .milliseconds(10)) { base in
            try await Self.withClient { client in
            let backend = SDWebUIBackend(baseURL: base, client: client, progressInterval: .milliseconds(20))
            await backend.waitUntilReady()
            #expect(backend.queueAhead == 1, "the emulator reports progress per task")
            var ahead = RuntimeJob(prompt: "ahead", seed: 1, width: 64, height: 64, steps: 20, model: "emulator-v1")
            ahead.taskID = "ahead"
            var behind = RuntimeJob(prompt: "behind", seed: 2, width: 64, height: 64, steps: 20, model: "emulator-v1")
            behind.taskID = "behind"
            let aheadWindow = RuntimeWindow()
            async let first = backend.run(ahead, window: aheadWindow) { _ in true }
            await aheadWindow.untilSubmitted()
            try await Task.sleep(for: .milliseconds(20))  // the first request is at the runtime
            let second = await SDWebUIBackendTests.runtimeError { () async throws(RuntimeError) in
                try await backend.run(behind, window: RuntimeWindow()) { _ in false }
            }
            let images = try await first
            #expect(images.count == 1)
            #expect(second?.code == "cancelled")
            let peer = try await Self.peerLog(base, client: client)
            let aheadRun = try #require(peer.first { $0.task.hasPrefix("sdq-ahead-") })
            #expect(!aheadRun.interrupted && aheadRun.progress == 1, "the generation ahead ran every step")
            if let behindRun = peer.first(where: { $0.task.hasPrefix("sdq-behind-") }) {
                #expect(behindRun.interrupted && behindRun.start >= aheadRun.end - 0.001)
            }
            }
        }
    }

    /// `SDQ_RUNTIME_QUEUE_AHEAD=0`: one job at a time, though the runtime could queue more.
    @Test func queueingAheadCanBeTurnedOff() async throws {
        try await withEmulatorServer { base in
            let selection = RuntimeSelection(runtime: "sdwebui", url: base)
            let off = makeRuntimeBackend(for: selection, emulatorStepDelay: .zero, queueAhead: false)
            let on = makeRuntimeBackend(for: selection, emulatorStepDelay: .zero)
            await off.waitUntilReady()
            await on.waitUntilReady()
            #expect(off.queueAhead == 0)
            #expect(on.queueAhead == 1)
        }
    }

    /// Runs `body` with an HTTP client of its own, shut down afterwards (the shared one keeps
    /// idle connections a server stopping gracefully would wait for).
    static func withClient(_ body: (HTTPClient) async throws -> Void) async throws {
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        do {
            try await body(client)
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
