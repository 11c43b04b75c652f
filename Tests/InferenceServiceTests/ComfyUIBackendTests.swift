import Foundation
@testable import InferenceService
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import Testing

/// The ComfyUI backend against the emulator's ComfyUI routes, over real HTTP.
@Suite struct ComfyUIBackendTests {
    /// The reference guidance's ComfyUI sample workflow (`task.content` of pipeline.json).
    static func sampleWorkflow() throws -> JSONValue {
        try #require(try JSONValue.parse(referenceSample("pipeline.json"))["task"]?["content"])
    }

    static func withEmulator<T: Sendable>(stepDelay: Duration = .milliseconds(5), _ body: @Sendable (ComfyUIBackend) async throws -> T) async throws -> T {
        try await withEmulatorServer(stepDelay: stepDelay, models: ["sd_xl_turbo_1.0.safetensors"]) { base in
            try await body(ComfyUIBackend(baseURL: base, pollInterval: .milliseconds(20)))
        }
    }

    static func job(_ workflow: JSONValue) -> RuntimeJob {
        RuntimeJob(kind: .comfyuiWorkflow, prompt: "", seed: 0, width: 0, height: 0, steps: 1, model: "m", runtimeOptions: workflow.serialized())
    }

    static func failure(_ body: () async throws(RuntimeError) -> [RuntimeImage]) async -> RuntimeError? {
        do {
            _ = try await body()
            return nil
        } catch { return error }
    }

    @Test func theSampleWorkflowRunsAndItsOutputsAreFetched() async throws {
        let workflow = try Self.sampleWorkflow()
        let images = try await Self.withEmulator { backend in
            await backend.waitUntilReady()
            return try await backend.run(Self.job(workflow)) { _ in true }
        }
        #expect(images.count == 1)
        #expect(images.first.map { [$0.width, $0.height] } == [512, 512])
        // The same image the in-process emulator renders for that workflow.
        let local = try await EmulatorRuntime(stepDelay: .zero).run(Self.job(workflow)) { _ in true }
        #expect(images.map(\.png) == local.map(\.png))
    }

    @Test func progressArrivesOverTheWebSocket() async throws {
        let workflow = try Self.sampleWorkflow()
        let seen = Accumulator<Double>()
        _ = try await Self.withEmulator(stepDelay: .milliseconds(25)) { backend in
            try await backend.run(Self.job(workflow)) { value in
                await seen.append([value])
                return true
            }
        }
        let values = await seen.items
        #expect(values.contains { $0 > 0 && $0 < 1 }, "progress seen: \(values)")
    }

    @Test func nodeErrorsFailForGoodNamingTheNode() async throws {
        var workflow = try #require(try Self.sampleWorkflow().objectValue)
        workflow["3"] = .object(["class_type": .string("NoSuchSampler"), "inputs": .object([:])])
        let job = Self.job(.object(workflow))
        let error = try await Self.withEmulator { backend in
            await Self.failure { () async throws(RuntimeError) in try await backend.run(job) { _ in true } }
        }
        #expect(error?.code == "workflow_invalid")
        #expect(error?.retryable == false)
        #expect(error?.message.hasPrefix("node 3 (NoSuchSampler)") == true)
    }

    @Test func aCancelInterruptsThePrompt() async throws {
        var workflow = try #require(try Self.sampleWorkflow().objectValue)
        // 200 steps × 20 ms: far longer than the test waits.
        workflow["3"] = .object(["class_type": .string("KSampler"), "inputs": .object([
            "seed": .number(1), "steps": .number(200), "cfg": .number(7), "sampler_name": .string("euler"),
            "positive": .array([.string("6"), .number(0)]), "negative": .array([.string("7"), .number(0)]),
            "model": .array([.string("4"), .number(0)]), "latent_image": .array([.string("5"), .number(0)]),
        ])])
        let job = Self.job(.object(workflow))
        // Timed from the run's start, not the emulator server's (whose start and stop on a loaded
        // machine take seconds): the run must end well before the prompt's 200 steps would.
        let (error, elapsed) = try await Self.withEmulator(stepDelay: .milliseconds(20)) { backend in
            let started = ContinuousClock.now
            let error = await Self.failure { () async throws(RuntimeError) in
                try await backend.run(job) { _ in ContinuousClock.now - started < .milliseconds(300) }
            }
            return (error, ContinuousClock.now - started)
        }
        #expect(error?.code == "cancelled")
        #expect(elapsed < .seconds(4))
    }

    @Test func executionErrorsAreClassified() {
        let interrupted = JSONValue.object(["status": .object(["status_str": .string("error"), "messages": .array([
            .array([.string("execution_interrupted"), .object([:])]),
        ])])])
        #expect(ComfyUIBackend.executionError(interrupted).retryable)
        let oom = JSONValue.object(["status": .object(["status_str": .string("error"), "messages": .array([
            .array([.string("execution_error"), .object(["node_id": .string("3"), "exception_message": .string("CUDA out of memory")])]),
        ])])])
        #expect(ComfyUIBackend.executionError(oom).code == "out_of_memory")
        #expect(ComfyUIBackend.executionError(oom).message.hasPrefix("node 3: "))
    }
}
