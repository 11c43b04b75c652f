import AsyncHTTPClient
import Foundation
@testable import InferenceService
import NIOCore
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import Testing
import EmulatorServer

/// The SD WebUI backend against the emulator server: the HTTP runtime path, for real.
@Suite struct EmulatorServerTests {
    @Test func theHTTPRuntimeReturnsWhatTheInProcessEmulatorRenders() async throws {
        let port = PortBox()
        let server = EmulatorServer(port: 0, stepDelay: .milliseconds(20), models: ["emulator-v1", "other"], logger: testLogger()) {
            await port.set($0)
        }
        let group = ServiceGroup(configuration: .serverUnderTest([server], logger: testLogger()))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let bound = await port.wait()
            let backend = SDWebUIBackend(baseURL: "http://127.0.0.1:\(bound)", progressInterval: .milliseconds(50))
            let job = RuntimeJob(prompt: "over http", seed: 11, width: 64, height: 72, steps: 10, batchSize: 2, model: "other")
            let progress = Counter()
            let images = try await backend.run(job) { value in
                await progress.add(value)
                return true
            }
            let local = try await EmulatorRuntime(stepDelay: .zero).run(job) { _ in true }
            #expect(images == local)
            #expect(images.map(\.seed) == [11, 12])
            #expect(images.first?.width == 64 && images.first?.height == 72)
            #expect(await progress.values.contains { $0 > 0 && $0 < 1 })

            var options = HTTPClientRequest(url: "http://127.0.0.1:\(bound)/sdapi/v1/sd-models")
            options.method = .GET
            let models = try await HTTPClient.shared.execute(options, timeout: .seconds(5))
            let body = try JSONValue.parse(Data(try await models.body.collect(upTo: 1 << 20).readableBytesView))
            guard case .array(let list) = body else { Issue.record("not a list"); return }
            #expect(list.compactMap { $0["title"]?.stringValue } == ["emulator-v1", "other"])

            let unknown = RuntimeJob(prompt: "x", seed: 1, width: 64, height: 64, steps: 1, model: "sd-1.5")
            await #expect(throws: RuntimeError.self) { _ = try await backend.run(unknown) { _ in true } }

            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func fewerImagesThanTheBatchIsARetryableFailure() throws {
        let job = RuntimeJob(prompt: "p", seed: 5, width: 64, height: 64, steps: 1, batchSize: 2, model: "m")
        let interrupted = Data(#"{"images": [], "info": "{}"}"#.utf8)
        #expect(throws: RuntimeError.self) { try SDWebUIBackend.decodeImages(interrupted, job: job) }
        do {
            _ = try SDWebUIBackend.decodeImages(interrupted, job: job)
        } catch {
            #expect(error.retryable)
        }
    }

    @Test func requestBodiesCarryModelAndRuntimeOptions() throws {
        let job = RuntimeJob(
            kind: .img2img, prompt: "p", seed: 5, width: 512, height: 512, steps: 20, model: "sdxl-base",
            runtimeOptions: Data(#"{"restore_faces": true, "steps": 30}"#.utf8), initImages: [Data([1, 2, 3])])
        let body = SDWebUIBackend.requestBody(for: job)
        #expect(body["override_settings"]?["sd_model_checkpoint"]?.stringValue == "sdxl-base")
        #expect(body["restore_faces"] == .bool(true))
        #expect(body["steps"]?.numberValue == 20, "validated task fields win over runtime_options")
        #expect(body["init_images"] == .array([.string(Data([1, 2, 3]).base64EncodedString())]))
    }
}
