@testable import ApiLambda
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// The API handler in memory (the same handler the HTTP server and Lambda adapters call).
@Suite struct APIHandlerTests {
    struct Harness {
        let fixture: EmbeddedFixture
        var handler: APIHandler

        static func make(apiKeys: [String] = [], limits: RequestLimits = RequestLimits()) async throws -> Harness {
            let pools = try PoolConfiguration(
                pools: [
                    PoolSpec(name: "default", runtime: "emulator", models: ["emulator-v1"]),
                    PoolSpec(name: "sdxl", runtime: "sdwebui", models: ["sdxl-base"]),
                ], limits: limits)
            let fixture = try await EmbeddedFixture.make(pools: pools)
            let signer = ObjectURLSigner(secret: Data(repeating: 7, count: 32))
            // Links are based on a configured public URL (Host alone is not believed: see
            // HostileInputTests.headersOfUntrustedPeersDoNotMakeLinks).
            return Harness(
                fixture: fixture,
                handler: APIHandler(
                    context: fixture.context, logger: testLogger(), apiKeys: apiKeys, signer: signer, publicBaseURL: "http://api.test"))
        }

        /// A harness whose API takes the keys of a key file (tenants, roles, quotas).
        static func make(keyFile: String) async throws -> Harness {
            let base = try await make()
            let keyring = try APIKeyring.parse(file: keyFile, source: "keys.yaml")
            return Harness(
                fixture: base.fixture,
                handler: APIHandler(
                    context: base.fixture.context, logger: testLogger(), keyring: keyring,
                    signer: ObjectURLSigner(secret: Data(repeating: 7, count: 32)), publicBaseURL: "http://api.test"))
        }

        func post(_ body: String, headers: [String: String] = [:]) async -> APIResponse {
            await handler.handle(APIRequest(method: "POST", path: "/v1/tasks", headers: headers.merging(["host": "api.test"]) { a, _ in a }, body: Data(body.utf8)))
        }

        func get(_ path: String, headers: [String: String] = [:]) async -> APIResponse {
            let (p, q) = APIRequest.splitTarget(path)
            return await handler.handle(APIRequest(method: "GET", path: p, query: q, headers: headers.merging(["host": "api.test"]) { a, _ in a }))
        }

        /// Messages waiting for the dispatcher.
        func queued() async throws -> Int {
            try await fixture.queue(fixture.context.names.dispatchQueue).depth().visible
        }
    }

    static func error(_ response: APIResponse) -> (code: String?, field: String?) {
        let json = try? JSONValue.parse(response.body)
        return (json?["error"]?["code"]?.stringValue, json?["error"]?["field"]?.stringValue)
    }

    @Test func acceptsATaskWith202AndQueuesIt() async throws {
        let harness = try await Harness.make()
        let response = await harness.post(#"{"prompt": "a lighthouse at dusk", "seed": 7, "width": 512, "height": 384, "steps": 12}"#)
        #expect(response.status == 202)
        let document = try JSONDecoder().decode(TaskDocument.self, from: response.body)
        #expect(response.headers["location"] == "/v1/tasks/\(document.id)")
        #expect(document.status == .queued)
        #expect(document.pool == "default")
        #expect(document.model == "emulator-v1")

        let messages = try await harness.fixture.queue(harness.fixture.context.names.dispatchQueue)
            .receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        #expect(messages.count == 1)
        #expect(messages[0].attributes[MessageAttribute.taskID] == document.id)
        #expect(messages[0].attributes[MessageAttribute.priority] == "normal")
        let task = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: messages[0].body, attributes: messages[0].attributes)
        #expect(task.id == document.id)
        #expect(task.parameters.prompt == "a lighthouse at dusk")
        #expect(task.parameters.seed == 7)
        #expect(task.parameters.width == 512 && task.parameters.height == 384)
        #expect(task.parameters.steps == 12)
        #expect(task.output.prefix == "outputs/\(document.id)/")

        let status = await harness.get("/v1/tasks/\(document.id)")
        #expect(status.status == 200)
        #expect(try JSONDecoder().decode(TaskDocument.self, from: status.body).timings.submittedAt != nil)
    }

    @Test func aRandomSeedIsResolvedAtSubmission() async throws {
        let harness = try await Harness.make()
        _ = await harness.post(#"{"prompt": "x", "seed": -1}"#)
        let message = try await harness.fixture.queue(harness.fixture.context.names.dispatchQueue)
            .receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil)[0]
        let task = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes)
        #expect(task.parameters.seed >= 0)
    }

    @Test(arguments: [
        (#"{"prompt": "x""#, 400, "invalid_json", nil),
        (#"[1, 2]"#, 400, "invalid_json", nil),
        (#""#, 400, "invalid_json", nil),
        (#"{"negative_prompt": "x"}"#, 400, "missing_field", "prompt"),
        (#"{"prompt": "   "}"#, 400, "invalid_field", "prompt"),
        (#"{"prompt": 5}"#, 400, "invalid_field", "prompt"),
        (#"{"prompt": "x", "width": 500}"#, 400, "invalid_field", "width"),
        (#"{"prompt": "x", "height": 4096}"#, 400, "invalid_field", "height"),
        (#"{"prompt": "x", "width": 8}"#, 400, "invalid_field", "width"),
        (#"{"prompt": "x", "steps": -5}"#, 400, "invalid_field", "steps"),
        (#"{"prompt": "x", "steps": 2.5}"#, 400, "invalid_field", "steps"),
        (#"{"prompt": "x", "seed": -2}"#, 400, "invalid_field", "seed"),
        (#"{"prompt": "x", "cfg_scale": "high"}"#, 400, "invalid_field", "cfg_scale"),
        (#"{"prompt": "x", "batch_size": 100}"#, 400, "invalid_field", "batch_size"),
        (#"{"prompt": "x", "pool": "nope"}"#, 422, "unknown_pool", "pool"),
        (#"{"prompt": "x", "model": "sd15"}"#, 422, "unknown_model", "model"),
        (#"{"prompt": "x", "pool": "default", "model": "sdxl-base"}"#, 422, "unknown_model", "model"),
        (#"{"prompt": "x", "kind": "video"}"#, 400, "invalid_field", "kind"),
        (#"{"prompt": "x", "kind": "img2img"}"#, 400, "missing_field", "init_image"),
        (#"{"prompt": "x", "init_image": {"base64": "***"}}"#, 400, "invalid_field", "init_image.base64"),
        (#"{"prompt": "x", "callback": {"url": "ftp://example.com"}}"#, 400, "invalid_field", "callback.url"),
        (#"{"prompt": "x", "callback": {"url": "https://example.com", "secret": "plain"}}"#, 400, "invalid_field", "callback.secret"),
        (#"{"prompt": "x", "priority": "urgent"}"#, 400, "invalid_field", "priority"),
        (#"{"prompt": "x", "deadline_seconds": 0}"#, 400, "invalid_field", "deadline_seconds"),
        (#"{"prompt": "x", "restore_faces": true}"#, 400, "unknown_field", "restore_faces"),
        (#"{"prompt": "x", "runtime_options": [1]}"#, 400, "invalid_field", "runtime_options"),
        (#"{"prompt": "x", "runtime_options": {"steps": 500}}"#, 400, "invalid_field", "runtime_options.steps"),
        (#"{"prompt": "x", "init_image": {"upload": "uploads//a"}}"#, 400, "invalid_field", "init_image.upload"),
        (#"{"prompt": "x", "kind": "comfyui_workflow", "workflow": null}"#, 400, "missing_field", "workflow"),
    ] as [(String, Int, String, String?)])
    func badInputGetsAFieldErrorAndQueuesNothing(body: String, status: Int, code: String, field: String?) async throws {
        let harness = try await Harness.make()
        let response = await harness.post(body)
        #expect(response.status == status)
        #expect(response.headers["content-type"] == "application/json")
        let error = Self.error(response)
        #expect(error.code == code)
        #expect(error.field == field)
        #expect(try await harness.queued() == 0)
    }

    @Test func anOversizedBodyIsRefusedWith413() async throws {
        var limits = RequestLimits()
        limits.maxBodyBytes = 1024
        let harness = try await Harness.make(limits: limits)
        let prompt = String(repeating: "a", count: 2000)
        let response = await harness.post(#"{"prompt": "\#(prompt)"}"#)
        #expect(response.status == 413)
        #expect(Self.error(response).code == "body_too_large")
        let flagged = await harness.handler.handle(APIRequest(method: "POST", path: "/v1/tasks", bodyTooLarge: true))
        #expect(flagged.status == 413)
        #expect(try await harness.queued() == 0)
    }

    @Test func idempotencyKeyReturnsTheSameTask() async throws {
        let harness = try await Harness.make()
        let body = #"{"prompt": "once", "seed": 3}"#
        let first = await harness.post(body, headers: ["Idempotency-Key": "k-1"])
        let second = await harness.post(body, headers: ["Idempotency-Key": "k-1"])
        #expect(first.status == 202 && second.status == 202)
        #expect(second.headers["idempotent-replayed"] == "true")
        #expect(first.headers["location"] == second.headers["location"])
        #expect(try await harness.queued() == 1)
        let conflict = await harness.post(#"{"prompt": "other"}"#, headers: ["Idempotency-Key": "k-1"])
        #expect(conflict.status == 409)
        #expect(Self.error(conflict).code == "idempotency_conflict")
    }

    @Test func aReplayPublishesATaskWhosePublishFailed() async throws {
        let harness = try await Harness.make()
        let body = #"{"prompt": "lost in transit", "seed": 5}"#
        var record = makeRecord()
        record.status = .failed
        record.error = TaskFailure(code: "submit_failed", message: "the task could not be queued")
        record.idempotencyKey = "k-lost"
        record.requestDigest = APIHandler.digest(Data(body.utf8))
        record.seed = 5
        _ = try await harness.fixture.transport.tasks.create(record)
        let response = await harness.post(body, headers: ["Idempotency-Key": "k-lost"])
        #expect(response.status == 202)
        #expect(response.headers["location"] == "/v1/tasks/\(record.id)")
        #expect(try await harness.fixture.transport.tasks.get(id: record.id)?.status == .queued)
        let messages = try await harness.fixture.queue(harness.fixture.context.names.dispatchQueue)
            .receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        #expect(messages.count == 1)
        let task = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: messages[0].body, attributes: messages[0].attributes)
        #expect(task.id == record.id)
        #expect(task.parameters.seed == 5)
    }

    /// Lengths are counted in Unicode code points, as JSON Schema's `maxLength` does (an emoji
    /// with a skin tone is one character to Swift and two code points); a MIME type has one `/`.
    @Test(arguments: [
        "Ã😍🏻/'" + String(repeating: "*", count: 96), "image/png/x", "/png", "image/", "imagepng",
    ])
    func uploadContentTypesFollowTheSchema(contentType: String) async throws {
        let harness = try await Harness.make()
        let body = try JSONSerialization.data(withJSONObject: ["content_type": contentType])
        let created = await harness.handler.handle(APIRequest(method: "POST", path: "/v1/uploads", headers: ["host": "api.test"], body: body))
        #expect(created.status == 400)
        #expect(Self.error(created).field == "content_type")
    }

    @Test func uploadsGiveASignedPutURLWhoseKeyATaskCanName() async throws {
        let harness = try await Harness.make()
        let created = await harness.handler.handle(APIRequest(
            method: "POST", path: "/v1/uploads", headers: ["host": "api.test"], body: Data(#"{"content_type": "image/png"}"#.utf8)))
        #expect(created.status == 201)
        let upload = try JSONValue.parse(created.body)
        let key = try #require(upload["key"]?.stringValue)
        let url = try #require(upload["url"]?.stringValue)
        #expect(key.hasPrefix("uploads/anonymous/"))
        #expect(url.hasPrefix("http://api.test/v1/objects/\(key)?"))
        let (path, query) = APIRequest.splitTarget(String(url.dropFirst("http://api.test".count)))
        // A GET signature does not authorise a PUT, and a tampered one nothing.
        let getOnly = APIRequest.splitTarget(ObjectURLSigner(secret: Data(repeating: 7, count: 32)).signedPath(for: key))
        #expect(await harness.handler.handle(APIRequest(method: "PUT", path: getOnly.path, query: getOnly.query, body: Data([1]))).status == 403)
        var tampered = query
        tampered["signature"] = "AAAA"
        #expect(await harness.handler.handle(APIRequest(method: "PUT", path: path, query: tampered, body: Data([1]))).status == 403)
        let put = await harness.handler.handle(APIRequest(
            method: "PUT", path: path, query: query, headers: ["content-type": "image/png"], body: Data([0x89, 0x50, 0x4E, 0x47])))
        #expect(put.status == 200)
        #expect(try await harness.fixture.transport.objects.get(key: key)?.contentType == "image/png")

        let submit = await harness.post(#"{"prompt": "from upload", "kind": "img2img", "init_image": {"upload": "\#(key)"}}"#)
        #expect(submit.status == 202)
        let missing = await harness.post(#"{"prompt": "x", "kind": "img2img", "init_image": {"upload": "uploads/nothing"}}"#)
        #expect(missing.status == 422)
        #expect(Self.error(missing).code == "upload_not_found")
    }

    @Test func cancelMovesANonTerminalTaskToCancelledOnce() async throws {
        let harness = try await Harness.make()
        let accepted = try JSONDecoder().decode(TaskDocument.self, from: await harness.post(#"{"prompt": "x"}"#).body)
        let cancel = APIRequest(method: "DELETE", path: "/v1/tasks/\(accepted.id)")
        let first = await harness.handler.handle(cancel)
        #expect(first.status == 200)
        #expect(try JSONDecoder().decode(TaskDocument.self, from: first.body).status == .cancelled)
        let second = await harness.handler.handle(cancel)
        #expect(second.status == 409)
        #expect(Self.error(second).code == "task_finished")
        // The result-writer is told, so it writes the manifest.
        let results = try await harness.fixture.queue(harness.fixture.context.names.resultsQueue).receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        #expect(results.count == 1)
        #expect(results.first?.attributes[MessageAttribute.taskID] == accepted.id)
    }

    @Test func unknownTasksAndRoutesAre404AndWrongMethods405() async throws {
        let harness = try await Harness.make()
        #expect(await harness.get("/v1/tasks/\(TaskID.generate())").status == 404)
        #expect(await harness.get("/v1/tasks/..%2Fetc").status == 404)
        #expect(await harness.get("/v2/everything").status == 404)
        let wrong = await harness.handler.handle(APIRequest(method: "PUT", path: "/v1/tasks"))
        #expect(wrong.status == 405)
        #expect(Self.error(wrong).code == "method_not_allowed")
        #expect(wrong.headers["allow"] == "GET, POST", "RFC 9110: a 405 names the allowed methods (the list and the submit)")
    }

    @Test func apiKeysAreRequiredWhenConfigured() async throws {
        let harness = try await Harness.make(apiKeys: ["secret-1"])
        let denied = await harness.post(#"{"prompt": "x"}"#)
        #expect(denied.status == 401)
        #expect(Self.error(denied).code == "unauthorized")
        #expect(await harness.post(#"{"prompt": "x"}"#, headers: ["Authorization": "Bearer secret-2"]).status == 401)
        #expect(await harness.post(#"{"prompt": "x"}"#, headers: ["Authorization": "Bearer secret-10"]).status == 401)
        #expect(await harness.post(#"{"prompt": "x"}"#, headers: ["Authorization": "Bearer secret-1"]).status == 202)
        #expect(await harness.get("/v1/pools", headers: ["X-Api-Key": "secret-1"]).status == 200)
        #expect(await harness.get("/healthz").status == 200)
        #expect(try await harness.queued() == 1)
    }

    @Test func poolsListNamesRuntimesModelsAndDepth() async throws {
        let harness = try await Harness.make()
        let response = await harness.get("/v1/pools")
        let json = try JSONValue.parse(response.body)
        guard case .array(let pools)? = json["pools"] else { Issue.record("no pools"); return }
        #expect(pools.compactMap { $0["name"]?.stringValue } == ["default", "sdxl"])
        #expect(pools[1]["runtime"]?.stringValue == "sdwebui")
        #expect(pools[0]["queue"]?["visible"]?.numberValue == 0)
    }

    @Test func signedObjectURLsServeObjectsAndRefuseTampering() async throws {
        let harness = try await Harness.make()
        try await harness.fixture.transport.objects.put(key: "outputs/t/image-0.png", data: Data([9, 9]), contentType: "image/png")
        let signer = ObjectURLSigner(secret: Data(repeating: 7, count: 32))
        let path = signer.signedPath(for: "outputs/t/image-0.png")
        let ok = await harness.get(path)
        #expect(ok.status == 200)
        #expect(ok.body == Data([9, 9]))
        #expect(ok.headers["content-type"] == "image/png")
        #expect(await harness.get(path.replacingOccurrences(of: "image-0", with: "image-1")).status == 403)
        #expect(await harness.get("/v1/objects/outputs/t/image-0.png").status == 403)
        let expired = signer.signedPath(for: "outputs/t/image-0.png", now: EpochClock.nowMillis() - 7_200_000)
        #expect(await harness.get(expired).status == 403)
        // Absurd expiry values are refused, never trapped on.
        #expect(await harness.get("/v1/objects/outputs/t/image-0.png?expires=99999999999999999&signature=a").status == 403)
        #expect(await harness.get("/v1/objects/outputs/t/image-0.png?expires=-9223372036854775808&signature=a").status == 403)
    }
}
