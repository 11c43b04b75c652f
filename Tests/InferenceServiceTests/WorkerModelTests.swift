import Foundation
import InferenceService
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Workers and registered models: the task's files are fetched into the cache and the runtime
/// loads them; a file the runtime cannot load fails its own task for good (`model_load_failed`,
/// one attempt) and the next task runs; a worker takes no task until the pool's required models
/// are here and verified, and its heartbeat says so.
@Suite struct WorkerModelTests {
    struct Harness {
        let fixture: EmbeddedFixture
        let models: TemporaryDirectory
        let emulator: EmulatorModels

        static func make(required: [String] = []) async throws -> Harness {
            let pool = PoolSpec(name: "default", runtime: "emulator", models: [], families: ["sdxl"], requiredModels: required)
            let fixture = try await EmbeddedFixture.make(pools: try fastPools([pool], maxReceiveCount: 3, visibilitySeconds: 30))
            let models = TemporaryDirectory()
            return Harness(fixture: fixture, models: models, emulator: EmulatorModels(directory: models.url, loadBytesPerSecond: 50_000_000))
        }

        func worker(id: String = "worker-a") -> InferenceWorker {
            var configuration = InferenceConfiguration(
                pool: "default", workerID: id, receiveWait: .milliseconds(200), progressInterval: .milliseconds(200), modelDirectory: models.url)
            configuration.fleetHeartbeatInterval = .milliseconds(200)
            configuration.requiredModelRetry = .milliseconds(200)
            return InferenceWorker(
                context: fixture.context, runtime: EmulatorRuntime(stepDelay: .milliseconds(2), models: emulator),
                configuration: configuration, logger: testLogger())
        }

        /// Records a dispatched task naming `assets` and puts it on the pool queue.
        func enqueue(_ assets: [Sdq_V1_ModelAsset]) async throws -> Sdq_V1_GenerationTask {
            var task = Sdq_V1_GenerationTask()
            task.id = TaskID.generate()
            task.pool = "default"
            task.model = assets.first?.name ?? ""
            task.family = "sdxl"
            task.assets = assets
            task.parameters.prompt = "model test"
            task.parameters.seed = 1
            task.parameters.width = 64
            task.parameters.height = 64
            task.parameters.steps = 3
            task.parameters.batchSize = 1
            task.output.prefix = "outputs/\(task.id)/"
            task.submittedAtMs = EpochClock.nowMillis()
            _ = try await fixture.transport.tasks.create(makeRecord(id: task.id, status: .dispatched))
            let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
            try await fixture.queue(fixture.context.names.poolQueue("default")).send(body: encoded.body, attributes: encoded.attributes)
            return task
        }

        func register(_ name: String, kind: ModelRecord.Kind = .checkpoint, data: Data) async throws -> Sdq_V1_ModelAsset {
            Sdq_V1_ModelAsset(record: try await registerModel(name, kind: kind, data: data, in: fixture.context))
        }

        /// Results until `count` arrived.
        func results(_ count: Int) async -> [Sdq_V1_TaskResult] {
            let collected = Accumulator<Sdq_V1_TaskResult>()
            _ = await eventually(timeout: .seconds(30)) {
                let messages = try await fixture.queue(fixture.context.names.resultsQueue).receive(
                    maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
                await collected.append(try messages.map { try MessageCodec.decode(Sdq_V1_TaskResult.self, body: $0.body, attributes: $0.attributes) })
                return await collected.count >= count
            }
            return await collected.items
        }
    }

    @Test func aCorruptFileFailsItsTaskAndNotTheNext() async throws {
        let harness = try await Harness.make()
        let good = try await harness.register("good-xl", data: safetensorsFile(bytes: 200_000, tag: "good"))
        // Registered as it is (its digest is its own): not a model a runtime can load.
        let broken = try await harness.register("broken-xl", data: corruptModelFile(bytes: 150_000))
        let lora = try await harness.register("ink", kind: .lora, data: safetensorsFile(bytes: 5_000, tag: "ink"))
        var withLora = lora
        withLora.weight = 0.6
        let first = try await harness.enqueue([broken])
        let second = try await harness.enqueue([good, withLora])
        let results = try await whileRunning([harness.worker()]) { _ in await harness.results(2) }
        let byID = Dictionary(results.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let failed = try #require(byID[first.id])
        #expect(failed.outcome == .failed)
        #expect(failed.error.code == "model_load_failed")
        #expect(failed.attempt <= 1)
        let succeeded = try #require(byID[second.id])
        #expect(succeeded.outcome == .succeeded)
        #expect(succeeded.images.count == 1)
        // The runtime loaded the good checkpoint once; the bad one never counted as loaded.
        #expect(harness.emulator.loaded == "good-xl.safetensors")
        #expect(harness.emulator.switches == 1)
        // The files are in the runtime's folders, byte for byte.
        let onDisk = try #require(FileManager.default.contents(atPath: harness.models.url.appendingPathComponent("checkpoints/good-xl.safetensors").path))
        #expect(sha256Hex(onDisk) == good.sha256)
        #expect(FileManager.default.fileExists(atPath: harness.models.url.appendingPathComponent("loras/ink.safetensors").path))
    }

    @Test func aFileMissingFromTheBucketFailsTheTaskWithoutRetries() async throws {
        let harness = try await Harness.make()
        var gone = try await harness.register("gone-xl", data: safetensorsFile(bytes: 10_000, tag: "gone"))
        gone.key = "models/sha256/deleted"
        let task = try await harness.enqueue([gone])
        let results = try await whileRunning([harness.worker()]) { _ in await harness.results(1) }
        #expect(results.map(\.id) == [task.id])
        #expect(results.first?.error.code == "model_unavailable")
        #expect(harness.emulator.switches == 0)
    }

    @Test func aWorkerWaitsForItsRequiredModels() async throws {
        let harness = try await Harness.make(required: ["base-xl"])
        let store = harness.fixture.transport.tasks
        try await whileRunning([harness.worker()]) { _ in
            // Not registered yet: the worker says what it misses and stays starting.
            #expect(await eventually {
                let beat = try await store.heartbeats(pool: "default").first
                return beat?.state == .starting && beat?.missingModels == ["base-xl"]
            })
            let base = try await harness.register("base-xl", data: safetensorsFile(bytes: 30_000, tag: "base"))
            // Fetched, verified, and the worker is ready; its heartbeat shows the cache.
            #expect(await eventually(timeout: .seconds(20)) {
                let beat = try await store.heartbeats(pool: "default").first
                return beat?.state == .idle && beat?.missingModels == [] && beat?.cached == [WorkerHeartbeat.digestPrefix(base.sha256)]
                    && beat?.cacheBytes == 30_000
            })
        }
    }
}
