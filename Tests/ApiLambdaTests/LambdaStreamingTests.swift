import Foundation
@testable import ApiLambda
import Logging
import NIOHTTP1
@testable import SDQLambdaRuntime
import SDQPlatform
import SDQTestSupport
import Testing

/// Lambda response streaming on the Runtime API's wire, checked by a peer that decodes what the
/// runtime posts as AWS documents it; and the buffered front doors' event streams, which end at
/// the first news.
@Suite struct LambdaStreamingTests {
    static func eventsEvent(_ id: String, domain: String = "abc.lambda-url.us-east-1.on.aws", lastEventID: String? = nil) -> Data {
        var headers: [String: JSONValue] = ["host": .string(domain)]
        if let lastEventID { headers["last-event-id"] = .string(lastEventID) }
        return JSONValue.object([
            "version": "2.0", "rawPath": .string("/v1/tasks/\(id)/events"), "rawQueryString": "",
            "headers": .object(headers),
            "requestContext": ["domainName": .string(domain), "http": ["method": "GET", "path": .string("/v1/tasks/\(id)/events")]],
        ]).serialized()
    }

    static func invocation(_ payload: Data, id: String = "req-stream", seconds: Int64 = 30) -> LambdaInvocation {
        LambdaInvocation(requestID: id, deadlineMillis: EpochClock.nowMillis() + seconds * 1000, payload: payload)
    }

    /// A task's events go to the Runtime API while they happen: chunked, with the mode header, the
    /// HTTP-integration content type, the JSON prelude and its eight NULs first, and the request
    /// still open until the task ends.
    @Test func anEventStreamIsPostedAsItHappens() async throws {
        var harness = try await EventStreamTests.harness()
        harness.handler.eventTiming.pollInterval = .milliseconds(20)
        let store = harness.fixture.context.transport.tasks
        let task = try await EventStreamTests.submit(harness)
        let api = harness.handler
        try await StreamingRuntimeAPIPeer.run { endpoint, record in
            let runtime = LambdaRuntime(
                client: HTTPLambdaRuntimeClient(endpoint: endpoint), handler: APILambdaHandler(api: api), logger: testLogger(),
                exportsTraceID: false, responseMode: .streaming)
            let serving = Task { try await runtime.serve(Self.invocation(Self.eventsEvent(task.id))) }
            #expect(await eventually(timeout: .seconds(10)) { await record.text.contains("event: queued") })
            #expect(await record.ended == false, "the queued event reached the Runtime API while the stream is open")
            let head = try #require(await record.head)
            #expect(head.method == .POST && head.uri == "/2018-06-01/runtime/invocation/req-stream/response")
            #expect(head.headers["Lambda-Runtime-Function-Response-Mode"] == ["streaming"])
            #expect(head.headers["Transfer-Encoding"] == ["chunked"])
            #expect(head.headers["Content-Type"] == [APILambdaHandler.httpIntegrationContentType])
            let body = await record.body
            let delimiter = try #require(body.range(of: Data(count: 8)), "the prelude ends with eight NUL bytes")
            let prelude = try JSONValue.parse(body[..<delimiter.lowerBound])
            #expect(prelude["statusCode"]?.numberValue == 200)
            #expect(prelude["headers"]?["content-type"]?.stringValue == "text/event-stream")

            _ = try await store.apply(.started(worker: "w", at: EpochClock.nowMillis()), to: task.id)
            #expect(await eventually(timeout: .seconds(10)) { await record.text.contains("event: running") })
            try await EventStreamTests.finish(task.id, in: store)
            try await serving.value
            #expect(await record.ended)
            #expect(await record.trailers?["Lambda-Runtime-Function-Error-Type"].isEmpty ?? true)
            let pieces = await record.pieces
            #expect(pieces.count >= 3, "written piece by piece, not at the end")
            let text = await record.text
            #expect(text.hasSuffix("\n\n") && text.contains("event: succeeded"))
        }
    }

    /// An error after the body began cannot change the status any more: it goes in the trailers.
    @Test func anErrorMidStreamGoesInTheTrailers() async throws {
        struct Broken: StreamingLambdaHandler {
            struct Failure: Error, CustomStringConvertible { var description: String { "the store went away" } }
            func handle(_ event: Data, context: LambdaContext) async throws -> Data { Data() }
            func stream(_ event: Data, context: LambdaContext, respond: (String, StreamedBody) async throws -> Void) async throws {
                try await respond("text/plain") { write in
                    try await write(Data("partial".utf8))
                    throw Failure()
                }
            }
        }
        try await StreamingRuntimeAPIPeer.run { endpoint, record in
            let runtime = LambdaRuntime(
                client: HTTPLambdaRuntimeClient(endpoint: endpoint), handler: Broken(), logger: testLogger(), exportsTraceID: false,
                responseMode: .streaming)
            try await runtime.serve(Self.invocation(Data("{}".utf8)))
            #expect(await record.text == "partial")
            let trailers = try #require(await record.trailers)
            #expect(trailers["Lambda-Runtime-Function-Error-Type"] == ["Runtime.StreamError"])
            let encoded = try #require(trailers["Lambda-Runtime-Function-Error-Body"].first)
            let report = try JSONValue.parse(try #require(Data(base64Encoded: encoded)))
            #expect(report["errorMessage"]?.stringValue == "the store went away")
            #expect(report["errorType"]?.stringValue == "Runtime.StreamError")
        }
    }

    /// Buffered (API Gateway, or a function not in streaming mode): the answer holds what is new
    /// and a `reconnect` event; with nothing new, it ends before the front door's limit.
    @Test func aBufferedFrontDoorGetsTheNewsAndAReconnect() async throws {
        var harness = try await EventStreamTests.harness()
        // 2 s of waiting before a 6 s deadline: the slack is for a loaded machine.
        harness.handler.eventTiming.margin = .seconds(4)
        let task = try await EventStreamTests.submit(harness)
        let handler = APILambdaHandler(api: harness.handler)
        func call(_ payload: Data, seconds: Int64) async throws -> (JSONValue, EventReader) {
            let context = LambdaContext(
                requestID: "r", deadlineMillis: EpochClock.nowMillis() + seconds * 1000, invokedFunctionARN: "", traceID: nil, logger: testLogger())
            let answer = try JSONValue.parse(try await handler.handle(payload, context: context))
            let reader = EventReader()
            await reader.feed(Data((answer["body"]?.stringValue ?? "").utf8))
            return (answer, reader)
        }
        let (first, events) = try await call(Self.eventsEvent(task.id, domain: "api.execute-api.us-east-1.amazonaws.com"), seconds: 30)
        #expect(first["statusCode"]?.numberValue == 200)
        #expect(await events.names == ["queued", "reconnect"])
        #expect(await events.retry == 500)
        let resumeFrom = try #require(await events.events.last?.id)
        let started = ContinuousClock.now
        let (_, quiet) = try await call(Self.eventsEvent(task.id, lastEventID: resumeFrom), seconds: 6)
        #expect(await quiet.names == ["reconnect"], "nothing new: it ends before the deadline, telling the client to come back")
        #expect(ContinuousClock.now - started < .seconds(6))
    }
}
