@testable import ApiLambda
import Foundation
import SDQPlatform
import SDQTestSupport
import Testing

/// Inputs an attacker would send: deep JSON, work hidden in runtime options, reused or
/// re-typed upload URLs, forged forwarding headers.
@Suite struct HostileInputTests {
    static func nested(_ depth: Int) -> String {
        String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
    }

    @Test func deepJSONIsAClearErrorAndCostsItsLengthNotItsDepthSquared() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        for depth in [64, 100, 511, 5000] {
            let clock = ContinuousClock()
            let started = clock.now
            let response = await harness.post(#"{"prompt": "x", "context": \#(Self.nested(depth))}"#)
            #expect(response.status == 400, "depth \(depth)")
            #expect(APIHandlerTests.error(response).code == "json_too_deep")
            #expect(clock.now - started < .milliseconds(500), "depth \(depth)")
        }
        // The deepest context accepted (63 inside the body's own object) comes back whole, everywhere.
        let accepted = await harness.post(#"{"prompt": "x", "context": \#(Self.nested(63))}"#)
        #expect(accepted.status == 202)
        let id = try #require(try JSONValue.parse(accepted.body)["id"]?.stringValue)
        let status = await harness.get("/v1/tasks/\(id)")
        #expect(status.status == 200 && !status.body.isEmpty)
        #expect(try JSONValue.parse(status.body)["context"] == JSONValue.parse(Data(Self.nested(63).utf8), maxDepth: 64))
        #expect(JSONValue.nestingDepth(of: Data(#"{"a": "[[[[{{{", "b": [1, [2]]}"#.utf8)) == 3)
    }

    @Test func aStoredContextTooDeepToParseIsShownAsTextNotDropped() throws {
        var record = TaskRecord(id: "01aaaaaaaaaaaaaaaaaaaaaaaa", pool: "default", model: "m", kind: "txt2img", seed: 1, width: 64, height: 64,
            expiresAt: EpochClock.nowMillis() + 60_000)
        record.context = Self.nested(600)
        let document = TaskDocument(record: record) { _ in "" }
        let data = try document.encoded()
        #expect(!data.isEmpty)
        #expect(try JSONValue.parse(data)["context"]?.stringValue == Self.nested(600))
    }

    @Test(arguments: [
        (#"{"enable_hr": true, "hr_scale": 8}"#, "runtime_options.hr_scale"),
        (#"{"enable_hr": true, "hr_resize_x": 8192, "hr_resize_y": 8192}"#, "runtime_options.hr_resize_x"),
        (#"{"enable_hr": true, "hr_second_pass_steps": 1000}"#, "runtime_options.hr_second_pass_steps"),
        (#"{"hr_scale": "big"}"#, "runtime_options.hr_scale"),
        (#"{"enable_hr": "yes"}"#, "runtime_options.enable_hr"),
        (#"{"upscaling_resize": 64}"#, "runtime_options.upscaling_resize"),
    ])
    func runtimeOptionsCannotAskForMoreThanTheLimits(options: String, field: String) async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let response = await harness.post(#"{"prompt": "x", "width": 512, "height": 512, "runtime_options": \#(options)}"#)
        #expect(response.status == 400)
        #expect(APIHandlerTests.error(response).field == field)
        #expect(try await harness.queued() == 0)
    }

    @Test func hiresWithinTheLimitsIsAccepted() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let response = await harness.post(
            #"{"prompt": "x", "width": 512, "height": 512, "runtime_options": {"enable_hr": true, "hr_scale": 2, "hr_second_pass_steps": 20}}"#)
        #expect(response.status == 202)
    }

    static func workflow(width: Int = 512, steps: Int = 20, scale: Double? = nil, samplers: Int = 1) -> String {
        var nodes = [#""1": {"class_type": "EmptyLatentImage", "inputs": {"width": \#(width), "height": 512, "batch_size": 1}}"#]
        var latent = #"["1", 0]"#
        if let scale {
            nodes.append(#""2": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["1", 0], "scale_by": \#(scale)}}"#)
            latent = #"["2", 0]"#
        }
        for index in 0..<samplers {
            nodes.append(#""s\#(index)": {"class_type": "KSampler", "inputs": {"steps": \#(steps), "latent_image": \#(latent)}}"#)
        }
        return #"{"kind": "comfyui_workflow", "prompt": "", "workflow": {\#(nodes.joined(separator: ", "))}}"#
    }

    @Test func workflowsAreHeldToTheSameLimits() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let cases: [(String, String)] = [
            (Self.workflow(width: 16384), "workflow.1.inputs.width"),
            (Self.workflow(steps: 10_000), "workflow.s0.inputs.steps"),
            (Self.workflow(scale: 8), "workflow.2.inputs.scale_by"),
            (Self.workflow(steps: 150, samplers: 3), "workflow"),
        ]
        for (body, field) in cases {
            let response = await harness.post(body)
            #expect(response.status == 400, "\(body)")
            #expect(APIHandlerTests.error(response).field == field)
        }
        #expect(await harness.post(Self.workflow(scale: 2, samplers: 2)).status == 202)
    }

    static func upload(_ harness: APIHandlerTests.Harness, _ body: String = #"{"content_type": "image/png"}"#) async throws
        -> (key: String, path: String, query: [String: String], answer: JSONValue)
    {
        let created = await harness.handler.handle(APIRequest(method: "POST", path: "/v1/uploads", body: Data(body.utf8)))
        #expect(created.status == 201)
        let answer = try JSONValue.parse(created.body)
        let url = try #require(answer["url"]?.stringValue)
        let (path, query) = APIRequest.splitTarget(String(url.dropFirst("http://api.test".count)))
        return (try #require(answer["key"]?.stringValue), path, query, answer)
    }

    @Test func uploadURLsAreBoundToWhatTheAnswerSays() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let (key, path, query, answer) = try await Self.upload(harness)
        // The URL expires when the answer says, within the documented 900 s.
        let expiresAt = try #require(answer["expires_at"]?.integerValue)
        #expect(Int64(try #require(query["expires"])).map { $0 * 1000 } == expiresAt)
        #expect(expiresAt - EpochClock.nowMillis() <= 900_000)
        #expect(answer["headers"]?["content-type"]?.stringValue == "image/png")
        func put(_ type: String, _ body: Data = Data([1, 2, 3])) async -> APIResponse {
            await harness.handler.handle(APIRequest(method: "PUT", path: path, query: query, headers: ["content-type": type], body: body))
        }
        // Another content type is another signature.
        let html = await put("text/html")
        #expect(html.status == 403 && APIHandlerTests.error(html).code == "invalid_signature")
        #expect(try await harness.fixture.transport.objects.exists(key: key) == false)
        #expect(await put("image/png").status == 200)
        // Once only: the same URL cannot overwrite.
        let again = await put("image/png", Data([9]))
        #expect(again.status == 409 && APIHandlerTests.error(again).code == "upload_exists")
        #expect(try await harness.fixture.transport.objects.get(key: key)?.data == Data([1, 2, 3]))
        // An expired URL and a GET signature do not authorise a PUT.
        var expired = query
        expired["expires"] = String(EpochClock.nowMillis() / 1000 - 1)
        #expect(await harness.handler.handle(APIRequest(method: "PUT", path: path, query: expired, headers: ["content-type": "image/png"])).status == 403)
    }

    @Test func aDeclaredSizeBoundsTheUpload() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let (_, path, query, answer) = try await Self.upload(harness, #"{"content_type": "image/png", "size": 4}"#)
        #expect(answer["max_bytes"]?.integerValue == 4)
        // A larger maximum in the URL breaks the signature; a larger body is refused.
        var widened = query
        widened["max_bytes"] = "1000000"
        let forged = await harness.handler.handle(APIRequest(
            method: "PUT", path: path, query: widened, headers: ["content-type": "image/png"], body: Data(count: 5)))
        #expect(forged.status == 403)
        let large = await harness.handler.handle(APIRequest(
            method: "PUT", path: path, query: query, headers: ["content-type": "image/png", "content-length": "5"], body: Data(count: 5)))
        #expect(large.status == 413)
        #expect(await harness.handler.handle(APIRequest(method: "POST", path: "/v1/uploads", body: Data(#"{"size": 0}"#.utf8))).status == 400)
    }

    @Test func headersOfUntrustedPeersDoNotMakeLinks() async throws {
        let fixture = try await EmbeddedFixture.make()
        var handler = APIHandler(
            context: fixture.context, logger: testLogger(), signer: ObjectURLSigner(secret: Data(repeating: 7, count: 32)))
        handler.trustedProxies = [AddressRange("10.0.0.0/8")!]
        func base(peer: String?, _ headers: [String: String]) -> String {
            var request = APIRequest(method: "GET", path: "/", headers: headers)
            request.peerAddress = peer
            request.localBaseURL = "http://127.0.0.1:8080"
            return handler.baseURL(request)
        }
        let forged = ["host": "evil.example", "x-forwarded-proto": "javascript", "x-forwarded-host": "evil.example"]
        #expect(base(peer: "203.0.113.7", forged) == "http://127.0.0.1:8080")
        #expect(base(peer: nil, forged) == "http://127.0.0.1:8080")
        // A trusted proxy is believed, but only for a scheme of http(s) and a plain authority.
        #expect(base(peer: "10.1.2.3", forged) == "http://evil.example")
        #expect(base(peer: "10.1.2.3", ["host": "api.example.com", "x-forwarded-proto": "https"]) == "https://api.example.com")
        #expect(base(peer: "10.1.2.3", ["host": "a/b@c", "x-forwarded-host": "javascript:alert(1)//"]) == "http://127.0.0.1:8080")
        handler.publicBaseURL = "https://sdq.example.com/"
        #expect(base(peer: "10.1.2.3", forged) == "https://sdq.example.com")
    }

    @Test func aMissingKeyIsRefusedBeforeTheBodyIsRead() async throws {
        let harness = try await APIHandlerTests.Harness.make(apiKeys: ["k"])
        let head = APIRequest(method: "POST", path: "/v1/tasks", headers: ["content-length": "16000000"])
        #expect(harness.handler.refusalBeforeBody(head)?.status == 401)
        #expect(harness.handler.refusalBeforeBody(APIRequest(method: "POST", path: "/v1/tasks", headers: ["x-api-key": "k"])) == nil)
        #expect(harness.handler.refusalBeforeBody(APIRequest(method: "GET", path: "/healthz")) == nil)
        // Upload PUTs are judged by their signature, from the head too.
        #expect(throws: APIError.self) {
            try harness.handler.grantUpload(path: "/v1/objects/uploads/x/y", query: ["expires": "9999999999", "signature": "bad"], headers: [:])
        }
    }

    @Test(.enabled(if: AWSTestEnvironment.available, "needs an AWS emulator (moto)"))
    func s3UploadURLsSignWhatTheyRequire() async throws {
        let fixture = try await StackFixture.make(.aws)
        let handler = APIHandler(context: fixture.context, logger: testLogger(), apiKeys: ["k"])
        let created = await handler.handle(APIRequest(
            method: "POST", path: "/v1/uploads", headers: ["x-api-key": "k"], body: Data(#"{"content_type": "image/png", "size": 3}"#.utf8)))
        #expect(created.status == 201)
        let answer = try JSONValue.parse(created.body)
        let url = try #require(answer["url"]?.stringValue)
        #expect(answer["headers"] == .object(["content-type": .string("image/png"), "if-none-match": .string("*"), "content-length": .string("3")]))
        #expect(url.contains("X-Amz-Expires=900"))
        #expect(url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match"))
        #expect(try #require(answer["key"]?.stringValue).hasPrefix("uploads/key-"))
    }
}
