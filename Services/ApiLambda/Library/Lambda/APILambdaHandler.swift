import Foundation
import SDQAWS
import SDQLambdaRuntime
import SDQPlatform

/// The API on Lambda: decodes API Gateway 1.0/2.0 and direct-invocation events, runs them through
/// ``APIHandler``, and answers in the caller's shape. An event of no known shape is answered as a
/// 400 JSON error in the API Gateway 2.0 shape, never as an invocation error: only a bug may be one.
///
/// AWS calls made for an invocation end by its deadline less ``answerMargin``, so a slow store
/// yields a 503 answer (with `Retry-After`) rather than a Lambda timeout the client sees as a 502.
public struct APILambdaHandler: LambdaHandler {
    public let api: APIHandler
    /// Time kept back from the deadline to encode and post the answer.
    public var answerMargin: Duration

    public init(api: APIHandler, answerMargin: Duration = .milliseconds(250)) {
        self.api = api
        self.answerMargin = answerMargin
    }

    public func handle(_ event: Data, context: LambdaContext) async throws -> Data {
        guard let parsed = LambdaEvent.parse(event) else {
            let error = APIResponse.error(APIError(status: 400, code: "invalid_event", message: "the event is not an API Gateway, Function URL or direct invocation event"))
            return LambdaEvent.apiGatewayV2(APIRequest(method: "GET", path: "/"), cookies: []).encode(error)
        }
        var request = prepared(parsed, context: context)
        // Buffered: the answer reaches the client only when complete, so an event stream ends at
        // its first news (the client reconnects with Last-Event-ID).
        request.streamsResponses = false
        if parsed.isAPIGateway { request.answerWithin = min(request.answerWithin ?? Self.apiGatewayLimit, Self.apiGatewayLimit) }
        let response = await AWSCallDeadline.$current.withValue(deadline(context)) { [request] in
            await api.handle(request).collected()
        }
        return parsed.encode(response)
    }

    /// The most a buffered API Gateway integration waits for its Lambda (29 s).
    public static let apiGatewayLimit: Duration = .seconds(29)

    /// The request of an event, with the invocation's trace as its parent and the time left as
    /// its answer limit.
    private func prepared(_ parsed: LambdaEvent, context: LambdaContext) -> APIRequest {
        var request = parsed.request
        // The invocation's X-Ray trace is the parent of the API's span, unless the caller sent one.
        if request.headers["traceparent"] == nil, let xray = context.traceID, let parent = TraceCarrier.traceparent(xrayHeader: xray) {
            request.headers["traceparent"] = parent
        }
        request.answerWithin = max(.zero, context.remaining - answerMargin)
        return request
    }

    private func deadline(_ context: LambdaContext) -> ContinuousClock.Instant {
        ContinuousClock.now.advanced(by: context.remaining - answerMargin)
    }
}

extension APILambdaHandler: StreamingLambdaHandler {
    /// The content type of a streamed HTTP response: a JSON prelude (status, headers, cookies),
    /// eight NUL bytes, then the body as it is written.
    public static let httpIntegrationContentType = "application/vnd.awslambda.http-integration-response"

    /// Streams the answer (a Function URL in `RESPONSE_STREAM` mode, a REST API route in `STREAM`
    /// mode): the prelude as soon as the head is known, then each event of an event stream as it
    /// happens, until the stream ends — at the latest its `reconnect` event before the deadline.
    public func stream(
        _ event: Data, context: LambdaContext, respond: (_ contentType: String, _ body: StreamedBody) async throws -> Void
    ) async throws {
        guard let parsed = LambdaEvent.parse(event), !parsed.isDirect else {
            // Direct invocations (and unknown shapes) are answered as the buffered path does.
            let answer = try await handle(event, context: context)
            try await respond("application/json") { write in try await write(answer) }
            return
        }
        let request = prepared(parsed, context: context)
        try await AWSCallDeadline.$current.withValue(deadline(context)) {
            let response = await api.handle(request)
            try await respond(Self.httpIntegrationContentType) { write in
                try await write(Self.prelude(response) + Data(count: 8))
                if let stream = response.stream {
                    try await stream.produce(write)
                } else if !response.body.isEmpty {
                    try await write(response.body)
                }
            }
        }
    }

    /// `{"statusCode", "headers", "cookies"}` of the HTTP integration response.
    static func prelude(_ response: APIResponse) -> Data {
        JSONValue.object([
            "statusCode": .number(Double(response.status)), "headers": .object(response.headers.mapValues { .string($0) }),
            "cookies": .array([]),
        ]).serialized()
    }
}
