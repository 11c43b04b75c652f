@testable import ApiLambda
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Tasks that name registered models: everything wrong is refused at submission with a 422
/// naming the field — never found at the GPU — and nothing is stored or queued; a good task
/// carries its files (checkpoint first, then LoRAs with weights) to the worker.
@Suite struct ModelSubmissionTests {
    struct Harness {
        let base: APIHandlerTests.Harness
        let checkpoint: ModelRecord
        let lora: ModelRecord

        static func make() async throws -> Harness {
            let pools = try PoolConfiguration(pools: [
                PoolSpec(name: "default", runtime: "emulator", models: ["emulator-v1"]),
                PoolSpec(name: "xl-a", runtime: "emulator", models: [], families: ["sdxl"]),
                PoolSpec(name: "xl-b", runtime: "comfyui", models: [], runtimeURL: "http://127.0.0.1:8188", families: ["sdxl"]),
            ])
            let fixture = try await EmbeddedFixture.make(pools: pools)
            let handler = APIHandler(context: fixture.context, logger: testLogger())
            let context = fixture.context
            let checkpoint = try await registerModel("juggernaut-xl", data: safetensorsFile(bytes: 4000, tag: "jx"), in: context)
            let lora = try await registerModel("pixel-art", kind: .lora, data: safetensorsFile(bytes: 900, tag: "px"), in: context)
            try await registerModel("dreamshaper-8", family: "sd15", data: safetensorsFile(bytes: 3000, tag: "ds"), in: context)
            try await registerModel("detail-15", kind: .lora, family: "sd15", data: safetensorsFile(bytes: 800, tag: "d15"), in: context)
            return Harness(base: APIHandlerTests.Harness(fixture: fixture, handler: handler), checkpoint: checkpoint, lora: lora)
        }

        /// The task the API published for the dispatcher.
        func published() async throws -> Sdq_V1_GenerationTask {
            let queue = base.fixture.queue(base.fixture.context.names.dispatchQueue)
            let message = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30)).first)
            return try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes)
        }
    }

    static let wrongModels: [(String, String, String)] = [
        (#"{"prompt": "x", "model": "nothing-like-it"}"#, "unknown_model", "model"),
        (#"{"prompt": "x", "model": "pixel-art"}"#, "invalid_model", "model"),
        (#"{"prompt": "x", "model": "dreamshaper-8"}"#, "family_not_served", "model"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "pool": "default"}"#, "family_not_served", "model"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "nope"}]}"#, "unknown_model", "loras[0].name"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "pixel-art"}, {"name": "detail-15"}]}"#, "family_mismatch", "loras[1].name"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "juggernaut-xl"}]}"#, "invalid_model", "loras[0].name"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "model_sha256": "0000000000000000000000000000000000000000000000000000000000000000"}"#, "model_digest_mismatch", "model_sha256"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "pixel-art", "sha256": "1111111111111111111111111111111111111111111111111111111111111111"}]}"#, "model_digest_mismatch", "loras[0].sha256"),
    ]

    // One stack for all the cases (each registers four models): nothing may be stored or queued
    // after any of them.
    @Test func wrongModelsAreRefusedAtSubmission() async throws {
        let harness = try await Harness.make()
        for (body, code, field) in Self.wrongModels {
            let response = await harness.base.post(body)
            #expect(response.status == 422, "\(body): \(String(decoding: response.body, as: UTF8.self))")
            let error = APIHandlerTests.error(response)
            #expect(error.code == code, "\(body)")
            #expect(error.field == field, "\(body)")
            #expect(try await harness.base.queued() == 0)
            let stored = try await harness.base.fixture.transport.tasks.list(TaskListQuery(tenant: Tenant.anonymous.name, limit: 10))
            #expect(stored.records.isEmpty)
        }
    }

    @Test func digestsAndLoRAsNeedAModel() async throws {
        let harness = try await Harness.make()
        for (body, field) in [
            (#"{"prompt": "x", "loras": [{"name": "pixel-art"}]}"#, "model"),
            (#"{"prompt": "x", "model_sha256": "0000000000000000000000000000000000000000000000000000000000000000"}"#, "model_sha256"),
        ] {
            let response = await harness.base.post(body)
            #expect(response.status == 422)
            #expect(APIHandlerTests.error(response).code == "model_required")
            #expect(APIHandlerTests.error(response).field == field)
            #expect(try await harness.base.queued() == 0)
        }
    }

    static let malformed: [(String, String)] = [
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": {"name": "pixel-art"}}"#, "loras"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "pixel-art", "weight": 9}]}"#, "loras[0].weight"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "pixel-art", "weight": "strong"}]}"#, "loras[0].weight"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "pixel-art"}, {"name": "pixel-art"}]}"#, "loras[1].name"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "../x"}]}"#, "loras[0].name"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "loras": [{"name": "pixel-art", "scale": 1}]}"#, "loras[0].scale"),
        (#"{"prompt": "x", "model": "juggernaut-xl", "model_sha256": "xyz"}"#, "model_sha256"),
    ]

    @Test func malformedModelFieldsAreRefusedByField() async throws {
        let harness = try await Harness.make()
        for (body, field) in Self.malformed {
            let response = await harness.base.post(body)
            #expect(response.status == 400, "\(body)")
            #expect(APIHandlerTests.error(response).field == field, "\(body)")
            #expect(try await harness.base.queued() == 0)
        }
    }

    @Test func aGoodTaskCarriesItsFilesToTheWorker() async throws {
        let harness = try await Harness.make()
        let response = await harness.base.post(
            #"{"prompt": "a castle", "model": "juggernaut-xl", "model_sha256": "\#(harness.checkpoint.sha256)", "loras": [{"name": "pixel-art", "weight": 0.75}]}"#)
        #expect(response.status == 202, "\(String(decoding: response.body, as: UTF8.self))")
        let task = try await harness.published()
        #expect(task.model == "juggernaut-xl")
        #expect(task.family == "sdxl")
        #expect(task.pool.isEmpty)  // the dispatcher places it among the family's pools
        #expect(task.assets.map(\.name) == ["juggernaut-xl", "pixel-art"])
        #expect(task.assets.map(\.kind) == ["checkpoint", "lora"])
        #expect(task.assets[0].sha256 == harness.checkpoint.sha256)
        #expect(task.assets[0].key == harness.checkpoint.key)
        #expect(task.assets[0].fileName == "juggernaut-xl.safetensors")
        #expect(task.assets[1].weight == 0.75)
        // The status document shows what was asked for.
        let id = try #require(try JSONValue.parse(response.body)["id"]?.stringValue)
        let status = try JSONValue.parse(await harness.base.get("/v1/tasks/\(id)").body)
        #expect(status["model"]?.stringValue == "juggernaut-xl")
        #expect(status["parameters"]?["loras"]?[0]?["name"]?.stringValue == "pixel-art")
        // A fixed model still routes as before, with no files.
        #expect(await harness.base.post(#"{"prompt": "x", "model": "emulator-v1"}"#).status == 202)
        #expect(try await harness.published().assets.isEmpty)
    }

    @Test func theModelListShowsRegisteredModels() async throws {
        let harness = try await Harness.make()
        let response = await harness.base.get("/v1/models?kind=lora")
        #expect(response.status == 200)
        let models = try #require(try JSONValue.parse(response.body)["models"]?.arrayValue)
        #expect(models.compactMap { $0["name"]?.stringValue } == ["detail-15", "pixel-art"])
        #expect(models[1]["family"]?.stringValue == "sdxl")
        #expect(models[1]["pools"]?.arrayValue?.compactMap(\.stringValue) == ["xl-a", "xl-b"])
        #expect(models[1]["key"] == nil)  // where files live is for operators
        #expect(await harness.base.get("/v1/models?kind=model").status == 400)
        #expect(await harness.base.get("/v1/models?sort=name").status == 400)
        #expect(await harness.base.get("/v1/models?family=" + String(repeating: "x", count: 33)).status == 400)
    }
}
