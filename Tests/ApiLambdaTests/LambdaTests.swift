import ApiLambda
import Foundation
import Hummingbird
import SDQAWS
import Logging
import SDQAWSTransport
import SDQLambdaRuntime
import SDQPlatform
import SDQTestSupport
import Testing

@Suite struct LambdaEventTests {
    @Test func functionURLAndHTTPAPIEventsBecomeRequests() throws {
        let event = Data(#"""
            {"version": "2.0", "rawPath": "/v1/tasks", "rawQueryString": "a=1&b=two%20words",
             "headers": {"content-type": "application/json", "x-forwarded-for": "1.1.1.1,2.2.2.2"},
             "cookies": ["c1=v1", "c2=v2"],
             "requestContext": {"http": {"method": "POST", "path": "/v1/tasks"}, "domainName": "abc.lambda-url.us-east-1.on.aws"},
             "body": "eyJwcm9tcHQiOiAieCJ9", "isBase64Encoded": true}
            """#.utf8)
        guard case .apiGatewayV2(let request, let cookies)? = LambdaEvent.parse(event) else { Issue.record("not 2.0"); return }
        #expect(request.method == "POST")
        #expect(request.path == "/v1/tasks")
        #expect(request.query == ["a": "1", "b": "two words"])
        #expect(request.headers["x-forwarded-for"] == "1.1.1.1,2.2.2.2")
        #expect(request.headers["cookie"] == "c1=v1; c2=v2")
        #expect(cookies == ["c1=v1", "c2=v2"])
        #expect(String(decoding: request.body, as: UTF8.self) == #"{"prompt": "x"}"#)
        // Links are based on the domain AWS says the request reached, not on client headers.
        #expect(request.localBaseURL == "https://abc.lambda-url.us-east-1.on.aws")
    }

    @Test func restAPIEventsJoinRepeatedHeaders() throws {
        let event = Data(#"""
            {"httpMethod": "GET", "path": "/v1/tasks/abc", "headers": {"Host": "api.example.com"},
             "requestContext": {"domainName": "api.example.com"},
             "multiValueHeaders": {"Accept": ["text/plain", "application/json"]},
             "queryStringParameters": {"x": "1"}, "body": null, "isBase64Encoded": false}
            """#.utf8)
        guard case .apiGatewayV1(let request)? = LambdaEvent.parse(event) else { Issue.record("not 1.0"); return }
        #expect(request.method == "GET")
        #expect(request.headers["accept"] == "text/plain,application/json")
        #expect(request.headers["host"] == "api.example.com")
        #expect(request.localBaseURL == "https://api.example.com")
        #expect(request.query == ["x": "1"])
    }

    @Test func responsesTakeTheCallersShape() throws {
        let json = APIResponse.json(202, Data(#"{"id":"t"}"#.utf8), headers: ["location": "/v1/tasks/t"])
        let v1 = try JSONValue.parse(LambdaEvent.apiGatewayV1(APIRequest(method: "GET", path: "/")).encode(json))
        #expect(v1["statusCode"]?.numberValue == 202)
        #expect(v1["body"]?.stringValue == #"{"id":"t"}"#)
        #expect(v1["isBase64Encoded"] == .bool(false))
        #expect(v1["multiValueHeaders"]?["location"] == .array([.string("/v1/tasks/t")]))
        let png = APIResponse(status: 200, headers: ["content-type": "image/png"], body: Data([0x89, 0x50]))
        let v2 = try JSONValue.parse(LambdaEvent.apiGatewayV2(APIRequest(method: "GET", path: "/"), cookies: []).encode(png))
        #expect(v2["isBase64Encoded"] == .bool(true))
        #expect(v2["body"]?.stringValue == Data([0x89, 0x50]).base64EncodedString())
        let direct = try JSONValue.parse(LambdaEvent.direct(APIRequest(method: "GET", path: "/")).encode(json))
        #expect(direct["status"]?.numberValue == 202)
        #expect(direct["body"]?["id"]?.stringValue == "t")
    }

    @Test func unknownShapesAreNotEvents() {
        #expect(LambdaEvent.parse(Data("not json".utf8)) == nil)
        #expect(LambdaEvent.parse(Data(#"{"hello": "world"}"#.utf8)) == nil)
    }
}

/// The run loop against a fake Runtime API client.
@Suite struct LambdaLoopTests {
    actor FakeClient: LambdaRuntimeClient {
        var pending: [LambdaInvocation]
        var responses: [(String, Data)] = []
        var failures: [(String, LambdaErrorReport)] = []
        init(_ pending: [LambdaInvocation]) { self.pending = pending }

        func next() async throws(LambdaRuntimeError) -> LambdaInvocation {
            guard !pending.isEmpty else { throw LambdaRuntimeError("no more invocations") }
            return pending.removeFirst()
        }
        func respond(requestID: String, body: Data) async throws(LambdaRuntimeError) { responses.append((requestID, body)) }
        func fail(requestID: String, error: LambdaErrorReport) async throws(LambdaRuntimeError) { failures.append((requestID, error)) }
        func initializationFailed(_ error: LambdaErrorReport) async throws(LambdaRuntimeError) {}
    }

    struct Echo: LambdaHandler {
        struct Boom: Error {}
        func handle(_ event: Data, context: LambdaContext) async throws -> Data {
            if event == Data("boom".utf8) { throw Boom() }
            let trace = context.traceID ?? "-"
            return Data("\(context.requestID) \(trace) \(context.remaining > .zero)".utf8)
        }
    }

    @Test func aHandlerErrorIsReportedAndTheLoopGoesOn() async throws {
        let deadline = Int64(Date().timeIntervalSince1970 * 1000) + 60_000
        let client = FakeClient([
            LambdaInvocation(requestID: "r1", deadlineMillis: deadline, traceID: "Root=1-abc", payload: Data("hi".utf8)),
            LambdaInvocation(requestID: "r2", deadlineMillis: deadline, payload: Data("boom".utf8)),
            LambdaInvocation(requestID: "r3", deadlineMillis: deadline, traceID: "Root=1-def", payload: Data("again".utf8)),
        ])
        var logger = Logger(label: "loop")
        logger.logLevel = .critical
        // The process environment is shared with tests running in parallel: leave it alone here
        //; the export itself is two lines in LambdaRuntime.serve.
        try await LambdaRuntime(client: client, handler: Echo(), logger: logger, exportsTraceID: false).run(limit: 3)
        let responses = await client.responses
        #expect(responses.map(\.0) == ["r1", "r3"])
        #expect(responses.map { String(decoding: $0.1, as: UTF8.self) } == ["r1 Root=1-abc true", "r3 Root=1-def true"])
        let failures = await client.failures
        #expect(failures.map(\.0) == ["r2"])
        #expect(failures.first?.1.errorType == "Runtime.Boom")
    }
}

/// The API on the Runtime API wire: a loopback peer, the real HTTP client and the real handler.
@Suite(.serialized) struct LambdaWireTests {
    @Test func apiGatewayAndDirectEventsAreAnsweredOverTheRuntimeAPI() async throws {
        let fixture = try await EmbeddedFixture.make()
        let api = APIHandler(context: fixture.context, logger: testLogger())
        try await RuntimeAPIDouble.run { endpoint, state in
            let submit = #"{"version":"2.0","rawPath":"/v1/tasks","rawQueryString":"","headers":{"content-type":"application/json","idempotency-key":"k1"},"requestContext":{"http":{"method":"POST","path":"/v1/tasks"}},"body":"{\"prompt\":\"on lambda\",\"seed\":1}","isBase64Encoded":false}"#
            await state.enqueue(id: "req-1", payload: Data(submit.utf8), trace: "Root=1-aaa")
            let client = HTTPLambdaRuntimeClient(endpoint: endpoint)
            let runtime = LambdaRuntime(client: client, handler: APILambdaHandler(api: api), logger: testLogger(), exportsTraceID: false)
            try await runtime.run(limit: 1)
            let first = try #require(await state.posted.first)
            #expect(first.kind == "response" && first.requestID == "req-1")
            let answer = try JSONValue.parse(first.body)
            #expect(answer["statusCode"]?.numberValue == 202)
            let document = try JSONValue.parse(Data((answer["body"]?.stringValue ?? "").utf8))
            let id = try #require(document["id"]?.stringValue)

            let status = #"{"httpMethod":"GET","path":"/v1/tasks/\#(id)","headers":{"Host":"x"},"body":null}"#
            await state.enqueue(id: "req-2", payload: Data(status.utf8))
            await state.enqueue(id: "req-3", payload: Data(#"{"action":"cancel","id":"\#(id)"}"#.utf8))
            let garbage = #"{"version":"2.0","rawPath":"/v1/tasks","requestContext":{"http":{"method":"POST"}},"body":"this is not json"}"#
            await state.enqueue(id: "req-4", payload: Data(garbage.utf8))
            await state.enqueue(id: "req-5", payload: Data("{not even an event".utf8))
            try await runtime.run(limit: 4)
            let posted = await state.posted
            #expect(posted.map(\.kind) == ["response", "response", "response", "response", "response"])
            #expect(try JSONValue.parse(posted[1].body)["statusCode"]?.numberValue == 200)
            let cancelled = try JSONValue.parse(posted[2].body)
            #expect(cancelled["status"]?.numberValue == 200)
            #expect(cancelled["body"]?["status"]?.stringValue == "cancelled")
            let bad = try JSONValue.parse(posted[3].body)
            #expect(bad["statusCode"]?.numberValue == 400, "a body that is not JSON is a 400 answer, not an invocation error")
            #expect(try JSONValue.parse(Data((bad["body"]?.stringValue ?? "").utf8))["error"]?["code"]?.stringValue == "invalid_json")
            #expect(try JSONValue.parse(posted[4].body)["statusCode"]?.numberValue == 400)
        }
    }

    /// AWS calls stop at the invocation's deadline (less the time to answer): a store that never
    /// answers yields a 503 before Lambda would kill the invocation, not a timeout.
    @Test func outgoingCallsRespectTheInvocationDeadline() async throws {
        let silent = Router()
        silent.post("/") { _, _ -> Response in
            try await Task.sleep(for: .seconds(30))
            return Response(status: .ok)
        }
        try await withLoopbackServer(silent) { port in
            let environment = AWSEnvironment([
                "AWS_ENDPOINT_URL": "http://127.0.0.1:\(port)", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKID",
                "AWS_SECRET_ACCESS_KEY": "secret", "AWS_MAX_ATTEMPTS": "5",
            ])
            let names = ResourceNames(stack: "deadline")
            let transport = AWSTransport(environment: environment, names: names, logger: testLogger())
            let api = APIHandler(context: StackContext(transport: transport, names: names, pools: .builtIn), logger: testLogger())
            try await RuntimeAPIDouble.run { endpoint, state in
                let status = #"{"httpMethod":"GET","path":"/v1/tasks/\#(TaskID.generate())","headers":{"Host":"x"},"body":null}"#
                await state.enqueue(id: "slow", payload: Data(status.utf8), deadlineInMillis: 6_000)
                let runtime = LambdaRuntime(
                    client: HTTPLambdaRuntimeClient(endpoint: endpoint), handler: APILambdaHandler(api: api, answerMargin: .seconds(3)),
                    logger: testLogger(), exportsTraceID: false)
                let started = ContinuousClock.now
                try await runtime.run(limit: 1)
                let elapsed = ContinuousClock.now - started
                let posted = try #require(await state.posted.first)
                #expect(posted.kind == "response")
                let answer = try JSONValue.parse(posted.body)
                #expect(answer["statusCode"]?.numberValue == 503)
                // 3 s of calls against a store that answers after 30 s, each try: the answer comes
                // before the 6 s deadline (the margin is the slack for a loaded machine).
                #expect(elapsed < .milliseconds(6_000), "answered after \(elapsed), past the deadline")
            }
        }
    }

    /// The real bootstrap exports `_X_AMZN_TRACE_ID` per invocation (its debug log line reads the
    /// variable back) and tags every line with the request id.
    @Test func theBootstrapExportsTheTraceIDOfEachInvocation() async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("api-lambda")
        let directory = TemporaryDirectory()
        let log = directory.url.appendingPathComponent("stderr.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        try await RuntimeAPIDouble.run { endpoint, state in
            let traces = ["Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", "Root=1-5759e988-00000000000000000000000a"]
            await state.enqueue(id: "t-1", payload: Data(#"{"action":"status","id":"01m8fa00000000000000000000"}"#.utf8), trace: traces[0])
            await state.enqueue(id: "t-2", payload: Data(#"{"action":"status","id":"01m8fa00000000000000000000"}"#.utf8), trace: traces[1])
            let process = Process()
            process.executableURL = binary
            // The Lambda binary runs on the AWS transport only (the emulator when there is one; the
            // invocations are logged either way, which is what this test reads).
            process.environment = AWSTestEnvironment.variables(extra: [
                "AWS_LAMBDA_RUNTIME_API": endpoint, "SDQ_TRANSPORT": "aws", "SDQ_STACK": AWSTestEnvironment.uniqueStack(),
                "LOG_LEVEL": "debug", "SDQ_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin",
            ])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: log)
            try AWSTestEnvironment.launch(process)
            defer { kill(process.processIdentifier, SIGKILL) }
            #expect(await eventually(timeout: .seconds(30)) { await state.posted.count == 2 })
            let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").compactMap { try? JSONValue.parse(Data($0.utf8)) }
            let invocations = lines.filter { $0["msg"]?.stringValue == "invocation" }
            #expect(invocations.map { $0["xray_trace_id"]?.stringValue } == traces)
            #expect(invocations.map { $0["aws_request_id"]?.stringValue } == ["t-1", "t-2"])
        }
    }

    /// Outside Lambda the bootstrap refuses to start and names the executable that serves HTTP.
    @Test func theBootstrapOutsideLambdaPointsAtTheHTTPExecutable() async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("api-lambda")
        let process = Process()
        process.executableURL = binary
        process.environment = ["PATH": "/usr/bin:/bin"]
        let stderr = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = stderr
        try await AWSTestEnvironment.runToExit(process)
        #expect(process.terminationStatus == 78)
        let message = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("AWS_LAMBDA_RUNTIME_API") && message.contains("`api`"))
    }

    /// An embedded configuration is a start-up failure of the Lambda (it carries no embedded transport).
    @Test func anEmbeddedConfigurationIsAStartUpFailureOfTheLambda() async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("api-lambda")
        try await RuntimeAPIDouble.run { endpoint, state in
            let process = Process()
            process.executableURL = binary
            process.environment = ["AWS_LAMBDA_RUNTIME_API": endpoint, "PATH": "/usr/bin:/bin"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try AWSTestEnvironment.launch(process)
            #expect(await eventually(timeout: .seconds(30)) { !process.isRunning })
            #expect(process.terminationStatus == 1)
            let posted = await state.posted
            #expect(posted.map(\.kind) == ["init-error"])
            #expect(try JSONValue.parse(posted.first?.body ?? Data())["errorMessage"]?.stringValue?.contains("SDQ_TRANSPORT=aws") == true)
        }
    }

    @Test func aStartUpFailurePostsInitErrorAndExitsNonZero() async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("api-lambda")
        try await RuntimeAPIDouble.run { endpoint, state in
            let process = Process()
            process.executableURL = binary
            process.environment = ["AWS_LAMBDA_RUNTIME_API": endpoint, "SDQ_TRANSPORT": "bogus", "PATH": "/usr/bin:/bin"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try AWSTestEnvironment.launch(process)
            #expect(await eventually(timeout: .seconds(30)) { !process.isRunning })
            #expect(process.terminationStatus == 1)
            let posted = await state.posted
            #expect(posted.map(\.kind) == ["init-error"])
            #expect(posted.first?.errorType == "Runtime.InitError")
            #expect(try JSONValue.parse(posted.first?.body ?? Data())["errorMessage"]?.stringValue?.contains("SDQ_TRANSPORT") == true)
        }
    }
}
