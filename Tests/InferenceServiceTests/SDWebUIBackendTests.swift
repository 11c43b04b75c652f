import AsyncHTTPClient
import Foundation
@testable import InferenceService
import EmulatorServer
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import Testing

/// The SD WebUI backend against the emulator's injected faults, extras and model switches.
@Suite struct SDWebUIBackendTests {
    /// Runs an emulator server with `faults` while `body` drives a backend pointed at it.
    static func withEmulator<T: Sendable>(
        faults: EmulatorFaults = EmulatorFaults(), models: [String] = ["emulator-v1", "other"],
        _ body: @Sendable (SDWebUIBackend) async throws -> T
    ) async throws -> T {
        // A client of its own, shut down before the server stops: the shared client keeps idle
        // connections for 600 s, and a server stopping gracefully may wait for them.
        try await withEmulatorServer(models: models, faults: faults) { base in
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
            do {
                let value = try await body(SDWebUIBackend(baseURL: base, client: client, progressInterval: .milliseconds(30)))
                try await client.shutdown()
                return value
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
    }

    static func runtimeError(_ body: () async throws(RuntimeError) -> [RuntimeImage]) async -> RuntimeError? {
        do {
            _ = try await body()
            return nil
        } catch { return error }
    }

    @Test func extrasUpscaleTheInputImage() async throws {
        let input = try EmulatorImage.png(.init(prompt: "in", model: "m", seed: 1, width: 64, height: 48, steps: 1, cfgScale: 1, sampler: "x"))
        let images = try await Self.withEmulator { backend in
            let job = RuntimeJob(
                kind: .extras, prompt: "", seed: 3, width: 0, height: 0, steps: 1, model: "emulator-v1",
                runtimeOptions: Data(#"{"upscaling_resize": 2, "upscaler_1": "R-ESRGAN 4x+"}"#.utf8), initImages: [input])
            return try await backend.run(job) { _ in true }
        }
        #expect(images.count == 1)
        #expect(images.first.map { ($0.width, $0.height) } ?? (0, 0) == (128, 96))
        #expect(images.first.flatMap { PNGInfo.size(of: $0.png) }.map { [$0.width, $0.height] } == [128, 96])
    }

    @Test func aTaskForAnotherModelSwitchesTheCheckpointFirst() async throws {
        let loaded = try await Self.withEmulator(faults: EmulatorFaults(modelSwitchDelay: .milliseconds(50))) { backend in
            #expect(await backend.loadedModel() == "emulator-v1")
            let job = RuntimeJob(prompt: "switch", seed: 1, width: 64, height: 64, steps: 1, model: "other")
            _ = try await backend.run(job) { _ in true }
            return await backend.loadedModel()
        }
        #expect(loaded == "other")
    }

    /// The loaded checkpoint is remembered: the first task reads it (and switches, and verifies
    /// the switch), later tasks for the same model make no round trip before generating.
    @Test func theLoadedCheckpointIsNotAskedForBeforeEveryGeneration() async throws {
        try await withEmulatorServer(models: ["emulator-v1", "other"]) { base in
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
            func reads() async throws -> Int64 {
                let response = try await client.execute(HTTPClientRequest(url: base + "/internal/stats"), timeout: .seconds(5))
                let body = try await response.body.collect(upTo: 1 << 16)
                return try #require(try JSONValue.parse(Data(body.readableBytesView))["options_reads"]?.integerValue)
            }
            let backend = SDWebUIBackend(baseURL: base, client: client, progressInterval: .milliseconds(30))
            let job = RuntimeJob(prompt: "cached", seed: 1, width: 64, height: 64, steps: 1, model: "other")
            _ = try await backend.run(job) { _ in true }
            let afterFirst = try await reads()
            #expect(afterFirst == 2, "read, switch, verify")
            #expect(backend.loaded.value == "other")
            for _ in 0..<3 { _ = try await backend.run(job) { _ in true } }
            #expect(try await reads() == afterFirst, "no options read before a generation for the loaded model")
            try await client.shutdown()
        }
    }

    /// After a failed generation the runtime may have restarted: the remembered checkpoint is
    /// dropped, so the next task reads it again.
    @Test func aFailedGenerationForgetsTheLoadedCheckpoint() async throws {
        try await Self.withEmulator(faults: EmulatorFaults(errorRate: 1)) { backend in
            backend.loaded.value = "emulator-v1"
            let job = RuntimeJob(prompt: "x", seed: 1, width: 64, height: 64, steps: 1, model: "emulator-v1")
            let failure = await Self.runtimeError { () async throws(RuntimeError) in try await backend.run(job) { _ in true } }
            #expect(failure?.retryable == true)
            #expect(backend.loaded.value == nil)
        }
    }

    @Test func injectedServerErrorsAreRetryableAndBadRequestsAreNot() async throws {
        let failure = try await Self.withEmulator(faults: EmulatorFaults(errorRate: 1)) { backend in
            await Self.runtimeError {
                () async throws(RuntimeError) in
                try await backend.run(RuntimeJob(prompt: "x", seed: 1, width: 64, height: 64, steps: 1, model: "emulator-v1")) { _ in true }
            }
        }
        #expect(failure?.code == "runtime_error")
        #expect(failure?.retryable == true)
        #expect(SDWebUIBackend.classify(status: 422, body: Data(#"{"detail":"bad"}"#.utf8)).retryable == false)
        let oom = SDWebUIBackend.classify(status: 500, body: Data("torch.cuda.OutOfMemoryError: CUDA out of memory".utf8))
        #expect(oom.code == "out_of_memory" && !oom.retryable)
    }

    @Test func aHungRuntimeIsInterruptedWhenTheProgressCallbackSaysStop() async throws {
        // Timed from the run's start, not the emulator server's (whose start and stop on a loaded
        // machine take seconds); the generation itself would never end.
        let (failure, elapsed) = try await Self.withEmulator(faults: EmulatorFaults(hangRate: 1)) { backend in
            let started = ContinuousClock.now
            let failure = await Self.runtimeError {
                () async throws(RuntimeError) in
                try await backend.run(RuntimeJob(prompt: "x", seed: 1, width: 64, height: 64, steps: 5, model: "emulator-v1")) { _ in
                    ContinuousClock.now - started < .milliseconds(300)
                }
            }
            return (failure, ContinuousClock.now - started)
        }
        #expect(failure?.code == "cancelled")
        #expect(elapsed < .seconds(10))
    }

    @Test func readinessWaitsForTheOptionsEndpoint() async throws {
        // Nothing listens on this port: the wait goes on until cancelled.
        let closed = SDWebUIBackend(baseURL: "http://127.0.0.1:1")
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await closed.waitUntilReady() }
            try? await Task.sleep(for: .milliseconds(300))
            #expect(await closed.loadedModel() == nil)
            group.cancelAll()
        }
        try await Self.withEmulator { backend in await backend.waitUntilReady() }
    }
}
