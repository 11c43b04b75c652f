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
        var record = TaskRecord(id: "01aaaaaaaaaaaaaaaaaaaaaaaa", pool: "default", model: "m", kind: .txt2img, seed: 1, width: 64, height: 64,
            expiresAt: EpochClock.nowMillis() + 60_000)
        record.context = Self.nested(600)
        let document = TaskDocument(record: record) { _ in "" }
        let data = try document.encoded()
        #expect(!data.isEmpty)
        #expect(try JSONValue.parse(data)["context"]?.stringValue == Self.nested(600))
    }

    /// One field out of range is a 400 (the OpenAPI document says so); fields each in range that
    /// together ask too much are a 422 `limit_exceeded`.
    @Test(arguments: [
        (#"{"enable_hr": true, "hr_scale": 8}"#, "runtime_options.hr_scale", 422),
        (#"{"enable_hr": true, "hr_resize_x": 8192, "hr_resize_y": 8192}"#, "runtime_options.hr_resize_x", 400),
        (#"{"enable_hr": true, "hr_second_pass_steps": 1000}"#, "runtime_options.hr_second_pass_steps", 400),
        (#"{"hr_scale": "big"}"#, "runtime_options.hr_scale", 400),
        (#"{"enable_hr": "yes"}"#, "runtime_options.enable_hr", 400),
        (#"{"upscaling_resize": 64}"#, "runtime_options.upscaling_resize", 400),
        // Figures far outside any integer are refused, not converted (that would trap).
        (#"{"enable_hr": true, "hr_scale": 1e300}"#, "runtime_options.hr_scale", 400),
        (#"{"hr_second_pass_steps": 1e300}"#, "runtime_options.hr_second_pass_steps", 400),
        // A1111 derives the other side from the aspect ratio: a 64 × 512 image resized to 2048
        // wide is 16384 high.
        (#"{"enable_hr": true, "hr_resize_x": 2048}"#, "runtime_options.hr_resize_x", 422),
        (#"{"enable_hr": true, "hr_resize_x": 2048, "hr_resize_y": 256}"#, "runtime_options.hr_resize_y", 422),
        (#"{"script_name": "x/y/z plot", "script_args": [1, "10,20,30", 9]}"#, "runtime_options.script_name", 400),
    ])
    func runtimeOptionsCannotAskForMoreThanTheLimits(options: String, field: String, status: Int) async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let size = options.contains("hr_resize") ? #""width": 64, "height": 512"# : #""width": 512, "height": 512"#
        let response = await harness.post(#"{"prompt": "x", \#(size), "runtime_options": \#(options)}"#)
        #expect(response.status == status, "\(String(decoding: response.body, as: UTF8.self))")
        #expect(APIHandlerTests.error(response).field == field)
        #expect(try await harness.queued() == 0)
    }

    @Test func withoutHiresATallImageIsNotJudgedAsIfUpscaled() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let response = await harness.post(#"{"prompt": "x", "width": 512, "height": 1816, "runtime_options": {"sampler_index": "Euler"}}"#)
        #expect(response.status == 202, "\(String(decoding: response.body, as: UTF8.self))")
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
            #expect(response.status == 422, "\(body)")
            #expect(APIHandlerTests.error(response).field == field)
        }
        #expect(await harness.post(Self.workflow(scale: 2, samplers: 2)).status == 202)
    }

    @Test(arguments: [
        // Figures ComfyUI would convert, hidden from a numeric check.
        (#""1": {"class_type": "EmptyLatentImage", "inputs": {"width": "16384", "height": 512, "batch_size": 1}}"#, "workflow.1.inputs.width"),
        (#""1": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": {"__value__": 4096}}}"#,
         "workflow.1.inputs.batch_size"),
        // A link to a primitive node is followed; a link to anything else is refused.
        (#""1": {"class_type": "KSampler", "inputs": {"steps": ["9", 0]}}, "9": {"class_type": "PrimitiveInt", "inputs": {"value": 100000}}"#,
         "workflow.1.inputs.steps"),
        (#""1": {"class_type": "KSampler", "inputs": {"steps": ["9", 0]}}, "9": {"class_type": "SomeMathNode", "inputs": {"a": 1}}"#,
         "workflow.1.inputs.steps"),
        // Enlarging an image whose size is not known before it runs.
        (#""1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}, "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "scale_by": 2}}"#,
         "workflow.2.inputs.scale_by"),
        (#""1": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}, "2": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["1", 0], "scale_by": 1e300}}"#,
         "workflow.2.inputs.scale_by"),
        (#""1": {"class_type": "ImageScaleToTotalPixels", "inputs": {"image": ["0", 0], "megapixels": 100}}"#, "workflow.1.inputs.megapixels"),
    ])
    func workflowFiguresMustBeVisible(nodes: String, field: String) async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let response = await harness.post(#"{"kind": "comfyui_workflow", "prompt": "", "workflow": {\#(nodes)}}"#)
        #expect(response.status == 422, "\(String(decoding: response.body, as: UTF8.self))")
        #expect(APIHandlerTests.error(response).field == field)
    }

    @Test func eachKindTakesOnlyItsOwnRuntimePart() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        // A workflow on an A1111 task would reach the runtime as unchecked options.
        let options = await harness.post(#"{"prompt": "x", "workflow": {"enable_hr": true, "hr_scale": 8}}"#)
        #expect(options.status == 400 && APIHandlerTests.error(options).field == "workflow")
        let comfy = await harness.post(
            #"{"kind": "comfyui_workflow", "prompt": "", "runtime_options": {"x": 1}, "workflow": {"1": {"class_type": "SaveImage", "inputs": {}}}}"#)
        #expect(comfy.status == 400 && APIHandlerTests.error(comfy).field == "runtime_options")
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
        // A GET signature of the key and an expired URL do not authorise a PUT.
        let getOnly = APIRequest.splitTarget(ObjectURLSigner(secret: Data(repeating: 7, count: 32)).signedPath(for: key))
        #expect(await harness.handler.handle(APIRequest(
            method: "PUT", path: getOnly.path, query: getOnly.query, headers: ["content-type": "image/png"], body: Data([1]))).status == 403)
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
        // A dual-stack listener sees the proxy as ::ffff:10.1.2.3; the proxy's own values are the last.
        #expect(base(peer: "::ffff:10.1.2.3", ["x-forwarded-host": "evil.example, api.example.com", "x-forwarded-proto": "javascript, https"])
            == "https://api.example.com")
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
        // Without a size S3 could not be held to max_bytes: refused.
        let unsized = await handler.handle(APIRequest(
            method: "POST", path: "/v1/uploads", headers: ["x-api-key": "k"], body: Data(#"{"content_type": "image/png"}"#.utf8)))
        #expect(unsized.status == 400 && APIHandlerTests.error(unsized).field == "size")
    }
}
