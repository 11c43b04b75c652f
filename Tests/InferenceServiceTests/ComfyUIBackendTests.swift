import AsyncHTTPClient
import Foundation
@testable import InferenceService
import SDQPlatform
import SDQTestSupport
import NIOCore
import NIOHTTP1
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
        // ComfyUI names an unknown class's node only in `error.details` (`Node ID '#3'`).
        #expect(error?.message.hasPrefix("node 3: ") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("NoSuchSampler") == true)
    }

    /// A workflow whose sampler runs `steps` steps.
    static func workflow(steps: Int) throws -> JSONValue {
        var workflow = try #require(try sampleWorkflow().objectValue)
        workflow["3"] = .object(["class_type": .string("KSampler"), "inputs": .object([
            "seed": .number(1), "steps": .number(Double(steps)), "cfg": .number(7), "sampler_name": .string("euler"),
            "positive": .array([.string("6"), .number(0)]), "negative": .array([.string("7"), .number(0)]),
            "model": .array([.string("4"), .number(0)]), "latent_image": .array([.string("5"), .number(0)]),
        ])])
        return .object(workflow)
    }

    /// Another client's prompt, queued straight on the emulator; returns its id.
    static func queueForeignPrompt(_ base: String, steps: Int) async throws -> String {
        let body = JSONValue.object(["prompt": try workflow(steps: steps), "client_id": "someone-else"]).serialized()
        let (status, answer) = try await httpJSON(.POST, base + "/prompt", body: body)
        #expect(status == 200)
        return try #require(answer["prompt_id"]?.stringValue)
    }

    static func httpJSON(_ method: HTTPMethod, _ url: String, body: Data? = nil) async throws -> (Int, JSONValue) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let data = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        return (Int(response.status.code), (try? JSONValue.parse(data)) ?? .null)
    }

    /// Cancelling a task whose prompt still waits behind another client's removes it from ComfyUI's
    /// queue and leaves the other prompt running to its end (no global interrupt).
    @Test(.timeLimit(.minutes(1))) func aCancelRemovesItsWaitingPromptAndSparesAnotherClientsRunningOne() async throws {
        try await withEmulatorServer(stepDelay: .milliseconds(20), models: ["sd_xl_turbo_1.0.safetensors"]) { base in
            let backend = ComfyUIBackend(baseURL: base, pollInterval: .milliseconds(20))
            let foreign = try await Self.queueForeignPrompt(base, steps: 60)  // about 1.2 s
            let job = Self.job(try Self.workflow(steps: 5))
            let started = ContinuousClock.now
            let error = await Self.failure { () async throws(RuntimeError) in
                try await backend.run(job) { _ in ContinuousClock.now - started < .milliseconds(200) }
            }
            #expect(error?.code == "cancelled")
            let (_, queue) = try await Self.httpJSON(.GET, base + "/queue")
            #expect(queue["queue_pending"]?.arrayValue?.isEmpty == true, "still waiting: \(queue)")
            #expect(queue["queue_running"]?[0]?[1]?.stringValue == foreign)
            var entry: JSONValue?
            for _ in 0..<300 where entry == nil {
                try await Task.sleep(for: .milliseconds(20))
                entry = try await Self.httpJSON(.GET, base + "/history/\(foreign)").1[foreign]
            }
            #expect(entry?["status"]?["status_str"]?.stringValue == "success", "the other client's prompt: \(entry ?? .null)")
        }
    }

    /// An interrupt sdq did not send (another client's `POST /interrupt` without a prompt id)
    /// fails the attempt as `runtime_interrupted`, retryable: not a success with no images, not a
    /// cancel.
    @Test(.timeLimit(.minutes(1))) func anInterruptSdqDidNotSendFailsTheAttempt() async throws {
        try await withEmulatorServer(stepDelay: .milliseconds(20), models: ["sd_xl_turbo_1.0.safetensors"]) { base in
            let backend = ComfyUIBackend(baseURL: base, pollInterval: .milliseconds(20))
            let job = Self.job(try Self.workflow(steps: 100))  // about 2 s
            async let outcome = Self.failure { () async throws(RuntimeError) in try await backend.run(job) { _ in true } }
            for _ in 0..<500 {
                if try await Self.httpJSON(.GET, base + "/queue").1["queue_running"]?.arrayValue?.isEmpty == false { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let (status, _) = try await Self.httpJSON(.POST, base + "/interrupt", body: Data("{}".utf8))
            #expect(status == 200)
            let error = await outcome
            #expect(error?.code == "runtime_interrupted")
            #expect(error?.retryable == true)
        }
    }

    /// A prompt ComfyUI forgets (its queue cleared, or a restart) ends the run within the bound,
    /// retryable, instead of leaving the task running for ever.
    @Test(.timeLimit(.minutes(1))) func aPromptComfyUIForgetsEndsTheRunWithinTheBound() async throws {
        try await withEmulatorServer(stepDelay: .milliseconds(100), models: ["sd_xl_turbo_1.0.safetensors"]) { base in
            let backend = ComfyUIBackend(baseURL: base, pollInterval: .milliseconds(20), lostPromptCheck: .milliseconds(200))
            _ = try await Self.queueForeignPrompt(base, steps: 150)  // about 15 s: it runs throughout
            let job = Self.job(try Self.workflow(steps: 5))
            async let outcome = Self.failure { () async throws(RuntimeError) in try await backend.run(job) { _ in true } }
            // Cleared once this task's prompt waits behind the other one (not before it arrived).
            for _ in 0..<500 {
                if try await Self.httpJSON(.GET, base + "/queue").1["queue_pending"]?.arrayValue?.isEmpty == false { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let cleared = ContinuousClock.now
            let (status, _) = try await Self.httpJSON(.POST, base + "/queue", body: JSONValue.object(["clear": true]).serialized())
            #expect(status == 200)
            let error = await outcome
            #expect(error?.code == "runtime_lost_prompt")
            #expect(error?.retryable == true)
            #expect(ContinuousClock.now - cleared < .seconds(10), "the other prompt (15 s) would have ended first")
        }
    }

    /// The end of a prompt comes over the websocket: with a history poll of 30 s, a 25 ms prompt
    /// returns long before the first poll would (the poll is only the fallback). The bound is half
    /// the poll interval, so a loaded machine cannot make this fail, and a missed websocket always
    /// does.
    @Test(.timeLimit(.minutes(2))) func theWebSocketEndsTheWaitNotThePoll() async throws {
        try await withEmulatorServer(stepDelay: .milliseconds(5), models: ["sd_xl_turbo_1.0.safetensors"]) { base in
            let backend = ComfyUIBackend(baseURL: base, pollInterval: .seconds(30))
            let job = Self.job(try Self.workflow(steps: 5))
            for _ in 0..<2 {
                let started = ContinuousClock.now
                let images = try await backend.run(job) { _ in true }
                let elapsed = ContinuousClock.now - started
                #expect(images.count == 1)
                #expect(elapsed < .seconds(15), "took \(elapsed): the 30 s poll, not the websocket, ended the wait")
            }
        }
    }

    /// Files are named after the task (a cached re-run cannot point at a cleaned-up file of an
    /// earlier task), and the images report the workflow's own seed and checkpoint.
    @Test func filesAreNamedAfterTheTaskAndImagesCarryTheWorkflowsSeedAndModel() async throws {
        try await withEmulatorServer(stepDelay: .milliseconds(2), models: ["sd_xl_turbo_1.0.safetensors"]) { base in
            let backend = ComfyUIBackend(baseURL: base, pollInterval: .milliseconds(20))
            var job = Self.job(try Self.sampleWorkflow())
            job.taskID = "01task0000000000000000abcd"
            let images = try await backend.run(job) { _ in true }
            #expect(images.count == 1)
            #expect(images.first?.seed == 89_465_186_141_685, "the KSampler's seed, not the task's (0)")
            #expect(images.first?.model == "sd_xl_turbo_1.0.safetensors")
            let (status, _) = try await Self.httpJSON(.GET, base + "/view?filename=ComfyUI_01task0000000000000000abcd_00001_.png&type=output")
            #expect(status == 200, "the sample's SaveImage prefix, followed by the task id")
            let workflow = ComfyUIBackend.namingFiles(try #require(try Self.sampleWorkflow().objectValue), for: "t1")
            #expect(workflow["9"]?["inputs"]?["filename_prefix"]?.stringValue == "ComfyUI_t1")
            #expect(workflow["3"] == (try Self.sampleWorkflow())["3"], "other nodes unchanged")
        }
    }

    @Test func nodeErrorsOnAnAcceptedPromptFailTheTask() {
        let answer = Data(#"{"prompt_id":"p1","number":3,"node_errors":{"8":{"class_type":"VAEDecode","errors":[{"message":"Required input is missing","details":"vae"}]}}}"#.utf8)
        let error = ComfyUIBackend.promptError(status: 200, body: answer)
        #expect(error.code == "workflow_invalid")
        #expect(error.message.hasPrefix("node 8 (VAEDecode): Required input is missing"))
        #expect(!error.retryable)
    }

    @Test func aCancelInterruptsThePrompt() async throws {
        var workflow = try #require(try Self.sampleWorkflow().objectValue)
        // 500 steps × 40 ms: far longer than the test waits, even on a loaded machine.
        workflow["3"] = .object(["class_type": .string("KSampler"), "inputs": .object([
            "seed": .number(1), "steps": .number(500), "cfg": .number(7), "sampler_name": .string("euler"),
            "positive": .array([.string("6"), .number(0)]), "negative": .array([.string("7"), .number(0)]),
            "model": .array([.string("4"), .number(0)]), "latent_image": .array([.string("5"), .number(0)]),
        ])])
        let job = Self.job(.object(workflow))
        // Timed from the run's start, not the emulator server's (whose start and stop on a loaded
        // machine take seconds): the run must end well before the prompt's 500 steps would (20 s).
        let (error, elapsed) = try await Self.withEmulator(stepDelay: .milliseconds(40)) { backend in
            let started = ContinuousClock.now
            let error = await Self.failure { () async throws(RuntimeError) in
                try await backend.run(job) { _ in ContinuousClock.now - started < .milliseconds(300) }
            }
            return (error, ContinuousClock.now - started)
        }
        #expect(error?.code == "cancelled")
        #expect(elapsed < .seconds(10))
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

    /// Every file an output node lists is fetched, whatever the key: saved images, previews, a
    /// video node's `gifs`, `audio`; not `input` files, not values that are no files.
    @Test func outputsOfEveryKindAreFound() throws {
        let history = try JSONValue.parse(Data(#"""
            {"outputs": {
              "9": {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]},
              "12": {"images": [{"filename": "b_00001_.png", "subfolder": "", "type": "temp"}],
                     "text": ["not a file"], "animated": [false]},
              "20": {"gifs": [{"filename": "clip_00001.mp4", "subfolder": "video", "type": "output", "format": "video/h264-mp4"}]},
              "30": {"audio": [{"filename": "sound_00001_.flac", "subfolder": "audio", "type": "output"}]},
              "40": {"images": [{"filename": "upload.png", "subfolder": "", "type": "input"}]}
            }}
            """#.utf8))
        let files = ComfyUIBackend.outputFiles(history)
        #expect(files.map(\.filename) == ["b_00001_.png", "clip_00001.mp4", "sound_00001_.flac", "a_00001_.png"])
        #expect(files.map(\.type) == ["temp", "output", "output", "output"])
        #expect(files[1].subfolder == "video")
        #expect(files.map { MediaTypes.of(fileName: $0.filename) } == ["image/png", "video/mp4", "audio/flac", "image/png"])
        #expect(MediaTypes.fileExtension(of: "video/mp4") == "mp4" && MediaTypes.fileExtension(of: "image/jpeg") == "jpg")
    }
}
