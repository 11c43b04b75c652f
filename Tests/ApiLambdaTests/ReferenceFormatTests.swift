@testable import ApiLambda
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// `POST /v1alpha2`: requests in the reference guidance's format (`Tests/Fixtures/anchor-v1alpha2`).
@Suite struct ReferenceFormatTests {
    typealias Harness = APIHandlerTests.Harness

    static func sample(_ name: String) throws -> Data { try referenceSample(name) }

    static func post(_ harness: Harness, _ body: Data, path: String = "/v1alpha2", headers: [String: String] = [:]) async -> APIResponse {
        await harness.handler.handle(
            APIRequest(method: "POST", path: path, headers: headers.merging(["host": "api.test"]) { a, _ in a }, body: body))
    }

    /// The one task message waiting for the dispatcher.
    static func publishedTask(_ harness: Harness) async throws -> Sdq_V1_GenerationTask {
        let messages = try await harness.fixture.queue(harness.fixture.context.names.dispatchQueue)
            .receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        try #require(messages.count == 1)
        return try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: messages[0].body, attributes: messages[0].attributes)
    }

    @Test(arguments: [
        ("t2i.json", Sdq_V1_TaskKind.txt2Img), ("i2i.json", .img2Img), ("extra-single-image.json", .extras),
        ("pipeline.json", .comfyuiWorkflow),
    ])
    func everySampleIsAcceptedInTheReferenceShape(file: String, kind: Sdq_V1_TaskKind) async throws {
        let harness = try await Harness.make()
        let body = try Self.sample(file)
        let response = await Self.post(harness, body)
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        let answer = try JSONValue.parse(response.body)
        let clientID = try JSONValue.parse(body)["task"]?["metadata"]?["id"]?.stringValue
        #expect(answer["id"]?.stringValue == clientID)
        let taskID = try #require(answer["task_id"]?.stringValue)
        #expect(answer["runtime"]?.stringValue == "default")
        #expect(answer["output_location"]?.stringValue == "s3://\(harness.fixture.transport.objects.bucket)/outputs/\(taskID)/")
        #expect(answer["status_url"]?.stringValue == "http://api.test/v1/tasks/\(taskID)")
        #expect(response.headers["location"] == "/v1/tasks/\(taskID)")

        let task = try await Self.publishedTask(harness)
        #expect(task.id == taskID)
        #expect(task.kind == kind)
        // The v1 status API knows the task.
        let status = await harness.get("/v1/tasks/\(taskID)")
        #expect(status.status == 200)
        #expect(try JSONValue.parse(status.body)["status"]?.stringValue == "queued")
    }

    @Test func textToImageCarriesItsParametersAndPassesTheRestThrough() async throws {
        let harness = try await Harness.make()
        let response = await Self.post(harness, try Self.sample("t2i.json"))
        #expect(response.status == 200)
        let task = try await Self.publishedTask(harness)
        #expect(task.parameters.prompt == "A dog")
        #expect(task.parameters.steps == 16)
        #expect(task.parameters.width == 512 && task.parameters.height == 512)
        let options = try JSONValue.parse(task.runtimeRequest)
        #expect(options["alwayson_scripts"] == .object([:]))
        #expect(options["prompt"] == nil)
    }

    @Test func initImagesByURLBecomeInputsTheWorkerFetches() async throws {
        let harness = try await Harness.make()
        #expect(await Self.post(harness, try Self.sample("i2i.json")).status == 200)
        let task = try await Self.publishedTask(harness)
        #expect(task.inputs.count == 1)
        #expect(task.inputs[0].url.hasPrefix("https://huggingface.co/"))
        #expect(task.inputs[0].key.isEmpty)
    }

    @Test func extrasTakeTheImageAndKeepTheUpscalerSettings() async throws {
        let harness = try await Harness.make()
        #expect(await Self.post(harness, try Self.sample("extra-single-image.json")).status == 200)
        let task = try await Self.publishedTask(harness)
        #expect(task.inputs.first?.url.hasSuffix("/cat.png") == true)
        let options = try JSONValue.parse(task.runtimeRequest)
        #expect(options["upscaler_1"]?.stringValue == "R-ESRGAN 4x+")
        #expect(options["upscaling_resize"] == .number(4))
        #expect(options["image"] == nil)
    }

    @Test func aPipelineIsAComfyUIWorkflowPassedUnchanged() async throws {
        let harness = try await Harness.make()
        let body = try Self.sample("pipeline.json")
        #expect(await Self.post(harness, body).status == 200)
        let task = try await Self.publishedTask(harness)
        let workflow = try JSONValue.parse(task.runtimeRequest)
        let content = try JSONValue.parse(body)["task"]?["content"]
        #expect(workflow == content)
        #expect(workflow["3"]?["class_type"]?.stringValue == "KSampler")
    }

    @Test func theMetadataIDIsTheIdempotencyKey() async throws {
        let harness = try await Harness.make()
        let body = try Self.sample("t2i.json")
        let first = await Self.post(harness, body)
        let second = await Self.post(harness, body, path: "/v1alpha2/task")
        #expect(first.status == 200 && second.status == 200)
        #expect(second.headers["idempotent-replayed"] == "true")
        let firstID = try JSONValue.parse(first.body)["task_id"]?.stringValue
        let secondID = try JSONValue.parse(second.body)["task_id"]?.stringValue
        #expect(firstID != nil && firstID == secondID)
        #expect(try await harness.queued() == 1)

        let changed = String(decoding: body, as: UTF8.self).replacingOccurrences(of: "A dog", with: "A cat")
        let conflict = await Self.post(harness, Data(changed.utf8))
        #expect(conflict.status == 409)
        #expect(APIHandlerTests.error(conflict).code == "idempotency_conflict")
        // The same request through v1 with that id as its key is another task: the keys are namespaced.
        let v1 = await harness.post(#"{"prompt": "A dog"}"#, headers: ["Idempotency-Key": "test-t2i"])
        #expect(v1.status == 202)
    }

    @Test func aRuntimeNamingAPoolRoutesThere() async throws {
        let harness = try await Harness.make()
        let body = #"{"task": {"metadata": {"id": "r1", "runtime": "sdxl", "tasktype": "text-to-image"}, "content": {"prompt": "x"}}}"#
        let response = await Self.post(harness, Data(body.utf8))
        #expect(response.status == 200)
        #expect(try JSONValue.parse(response.body)["runtime"]?.stringValue == "sdxl")
        #expect(try await Self.publishedTask(harness).pool == "sdxl")
    }

    @Test(arguments: [
        (#"[1]"#, 400, "invalid_json", nil as String?),
        (#"{"task": {"content": {}}}"#, 400, "missing_field", "task.metadata"),
        (#"{"task": {"metadata": {"id": "a"}, "content": {"prompt": "x"}}}"#, 400, "missing_field", "task.metadata.tasktype"),
        (#"{"task": {"metadata": {"tasktype": "video"}, "content": {}}}"#, 400, "invalid_field", "task.metadata.tasktype"),
        (#"{"task": {"metadata": {"tasktype": 3}, "content": {}}}"#, 400, "invalid_field", "task.metadata.tasktype"),
        (#"{"task": {"metadata": {"tasktype": "text-to-image"}}}"#, 400, "missing_field", "task.content"),
        (#"{"task": {"metadata": {"tasktype": "text-to-image"}, "content": {"steps": 5}}}"#, 400, "missing_field", "task.content.prompt"),
        (#"{"task": {"metadata": {"tasktype": "text-to-image"}, "content": {"prompt": "x", "width": 100000}}}"#, 400, "invalid_field", "task.content.width"),
        (#"{"task": {"metadata": {"tasktype": "text-to-image"}, "content": {"prompt": "x", "n_iter": 4}}}"#, 400, "invalid_field", "task.content.n_iter"),
        (#"{"task": {"metadata": {"tasktype": "image-to-image"}, "content": {"prompt": "x"}}}"#, 400, "missing_field", "task.content.init_images"),
        (#"{"task": {"metadata": {"tasktype": "image-to-image"}, "content": {"prompt": "x", "init_images": ["a", "b"]}}}"#, 400, "invalid_field", "task.content.init_images"),
        (#"{"task": {"metadata": {"tasktype": "image-to-image"}, "content": {"prompt": "x", "init_images": ["ftp://h/x.png"]}}}"#, 400, "invalid_field", "task.content.init_images"),
        (#"{"task": {"metadata": {"tasktype": "pipeline"}, "content": {"1": {"inputs": {}}}}}"#, 400, "invalid_field", "task.content.1"),
        (#"{"task": {"metadata": {"tasktype": "pipeline"}, "content": {}}}"#, 400, "invalid_field", "task.content"),
        (#"{"task": {"metadata": {"tasktype": "text-to-image", "id": ""}, "content": {"prompt": "x"}}}"#, 400, "invalid_field", "task.metadata.id"),
    ])
    func badRequestsNameTheReferenceField(body: String, status: Int, code: String, field: String?) async throws {
        let harness = try await Harness.make()
        let response = await Self.post(harness, Data(body.utf8))
        #expect(response.status == status)
        let error = APIHandlerTests.error(response)
        #expect(error.code == code)
        #expect(error.field == field)
        #expect(try await harness.queued() == 0)
    }

    @Test func wrongMethodsAndKeysAreRefusedAsOnV1() async throws {
        let harness = try await Harness.make(apiKeys: ["k"])
        let body = try Self.sample("t2i.json")
        #expect(await Self.post(harness, body).status == 401)
        #expect(await Self.post(harness, body, headers: ["x-api-key": "k"]).status == 200)
        let get = await harness.get("/v1alpha2", headers: ["x-api-key": "k"])
        #expect(get.status == 405)
        #expect(get.headers["allow"] == "POST")
    }
}
