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
        let deadline = ContinuousClock.now.advanced(by: context.remaining - answerMargin)
        var request = parsed.request
        // The invocation's X-Ray trace is the parent of the API's span, unless the caller sent one.
        if request.headers["traceparent"] == nil, let xray = context.traceID, let parent = TraceCarrier.traceparent(xrayHeader: xray) {
            request.headers["traceparent"] = parent
        }
        let response = await AWSCallDeadline.$current.withValue(deadline) { [request] in await api.handle(request) }
        return parsed.encode(response)
    }
}
