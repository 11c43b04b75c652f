import Foundation
import SDQLambdaRuntime
import SDQPlatform

/// The API on Lambda: decodes API Gateway 1.0/2.0 and direct-invocation events, runs them through
/// ``APIHandler``, and answers in the caller's shape. An event of no known shape is answered as a
/// 400 JSON error in the API Gateway 2.0 shape, never as an invocation error: only a bug may be one.
public struct APILambdaHandler: LambdaHandler {
    public let api: APIHandler

    public init(api: APIHandler) { self.api = api }

    public func handle(_ event: Data, context: LambdaContext) async throws -> Data {
        guard let parsed = LambdaEvent.parse(event) else {
            let error = APIResponse.error(APIError(status: 400, code: "invalid_event", message: "the event is not an API Gateway, Function URL or direct invocation event"))
            return LambdaEvent.apiGatewayV2(APIRequest(method: "GET", path: "/"), cookies: []).encode(error)
        }
        return parsed.encode(await api.handle(parsed.request))
    }
}
