import AsyncHTTPClient
import Foundation
@testable import InferenceService
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Registered models on an SD WebUI runtime (the emulator server in A1111's manner: it lists its
/// checkpoint folder at start and on `refresh-checkpoints` only): the worker caches the file in
/// the runtime's folder, asks for a rescan only when the folder changed, loads the checkpoint by
/// its file name, and a file that does not load fails its own task while the next one runs.
@Suite struct SDWebUIModelTests {
    static func stats(_ base: String) async throws -> JSONValue {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/internal/stats"), timeout: .seconds(5))
        return try JSONValue.parse(Data(try await response.body.collect(upTo: 1 << 20).readableBytesView))
    }

    @Test func theWorkerCachesRescansOnlyOnChangeAndSurvivesABadFile() async throws {
        let models = TemporaryDirectory()
        let harness = try await WorkerModelTests.Harness.make()
        let good = try await harness.register("good-xl", data: safetensorsFile(bytes: 80_000, tag: "good"))
        let bad = try await harness.register("bad-xl", data: corruptModelFile(bytes: 60_000))
        try await withEmulatorServer(stepDelay: .milliseconds(2), modelDirectory: models.url) { base in
            var configuration = InferenceConfiguration(
                pool: "default", receiveWait: .milliseconds(200), progressInterval: .milliseconds(200), modelDirectory: models.url)
            configuration.fleetHeartbeatInterval = .milliseconds(200)
            let worker = InferenceWorker(
                context: harness.fixture.context, runtime: SDWebUIBackend(baseURL: base, progressInterval: .milliseconds(30)),
                configuration: configuration, logger: testLogger(),
                modelCache: ModelCache(root: models.url, folders: ModelFolders(runtime: .sdwebui), limitBytes: 1 << 30, objects: harness.fixture.transport.objects))
            let first = try await harness.enqueue([good])
            let second = try await harness.enqueue([bad])
            let (results, rescans, third) = try await whileRunning([worker]) { _ in
                var results = await harness.results(2)
                // Both files arrived (one rescan each, or one for both when they came together).
                let rescans = try await Self.stats(base)["refreshes"]?.integerValue ?? 0
                let third = try await harness.enqueue([good])
                results += await harness.results(1)
                return (results, rescans, third)
            }
            let byID = Dictionary(results.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            #expect(byID[first.id]?.outcome == .succeeded)
            #expect(byID[second.id]?.outcome == .failed)
            #expect(byID[second.id]?.error.code == "model_load_failed")
            #expect(byID[third.id]?.outcome == .succeeded)
            #expect((1...2).contains(rescans))
            // The third task found its file cached: no rescan.
            #expect(try await Self.stats(base)["refreshes"]?.integerValue == rescans)
            #expect(FileManager.default.fileExists(atPath: models.url.appendingPathComponent("Stable-diffusion/good-xl.safetensors").path))
            let backend = SDWebUIBackend(baseURL: base)
            #expect(await backend.loadedModel() == "good-xl.safetensors")
        }
    }

    @Test func loRAsBecomePromptSyntaxAndWorkflowNodes() throws {
        var job = RuntimeJob(prompt: "a fox", seed: 1, width: 64, height: 64, steps: 2, model: "base.safetensors")
        job.checkpointFile = "base.safetensors"
        job.loras = [LoraFile(fileName: "ink.safetensors", weight: 0.8), LoraFile(fileName: "paper.v2.safetensors", weight: -0.25)]
        #expect(SDWebUIBackend.requestBody(for: job)["prompt"]?.stringValue == "a fox <lora:ink:0.8> <lora:paper.v2:-0.25>")
        #expect(SDWebUIBackend.requestBody(for: job)["override_settings"]?["sd_model_checkpoint"]?.stringValue == "base.safetensors")

        let workflow: [String: JSONValue] = try #require(JSONValue.parse(Data("""
            {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "old.safetensors"}},
             "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
             "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "positive": ["5", 0], "seed": 1}},
             "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}}
            """.utf8)).objectValue)
        let applied = try ComfyWorkflow.applying(checkpoint: job.checkpointFile, loras: job.loras, to: workflow).get()
        #expect(applied["4"]?["inputs"]?["ckpt_name"]?.stringValue == "base.safetensors")
        #expect(applied["sdq_lora_1"]?["inputs"]?["model"] == .array([.string("4"), .number(0)]))
        #expect(applied["sdq_lora_1"]?["inputs"]?["lora_name"]?.stringValue == "ink.safetensors")
        #expect(applied["sdq_lora_2"]?["inputs"]?["clip"] == .array([.string("sdq_lora_1"), .number(1)]))
        #expect(applied["sdq_lora_2"]?["inputs"]?["strength_model"]?.numberValue == -0.25)
        // The sampler and the text encoder now take the chain's end; the VAE stays on the loader.
        #expect(applied["3"]?["inputs"]?["model"] == .array([.string("sdq_lora_2"), .number(0)]))
        #expect(applied["5"]?["inputs"]?["clip"] == .array([.string("sdq_lora_2"), .number(1)]))
        #expect(applied["8"]?["inputs"]?["vae"] == .array([.string("4"), .number(2)]))
        #expect(throws: Never.self) { try ComfyWorkflow.parse(applied).get() }
        // LoRAs need a loader to hang from.
        #expect(throws: ComfyWorkflow.NodeError.self) {
            try ComfyWorkflow.applying(checkpoint: nil, loras: job.loras, to: ["3": workflow["3"]!]).get()
        }
    }
}
