import Foundation
import SDQPlatform

/// The shapes a Lambda event arrives in, and how each is answered.
public enum LambdaEvent: Sendable, Equatable {
    /// API Gateway REST API (payload format 1.0).
    case apiGatewayV1(APIRequest)
    /// HTTP API or Function URL (payload format 2.0).
    case apiGatewayV2(APIRequest, cookies: [String])
    /// A direct invocation: `{"action": "submit" | "status" | "cancel", …}`.
    case direct(APIRequest)

    /// Recognises an event; nil when it has none of the known shapes.
    public static func parse(_ data: Data) -> LambdaEvent? {
        // A direct invocation holds the task one level down: the task itself is held to the limit.
        guard let event = try? JSONValue.parse(data, maxDepth: JSONValue.defaultMaxDepth + 1), case .object(let object) = event else {
            return nil
        }
        if object["version"]?.stringValue == "2.0", let http = object["requestContext"]?["http"] {
            return parseV2(object, http: http)
        }
        if let method = object["httpMethod"]?.stringValue {
            return parseV1(object, method: method)
        }
        if let action = object["action"]?.stringValue {
            return parseDirect(object, action: action)
        }
        return nil
    }

    private static func body(_ object: [String: JSONValue]) -> Data {
        guard let text = object["body"]?.stringValue else { return Data() }
        if case .bool(true)? = object["isBase64Encoded"] { return Data(base64Encoded: text) ?? Data() }
        return Data(text.utf8)
    }

    /// `https://` and the domain API Gateway or the Function URL was reached at
    /// (`requestContext.domainName`, set by AWS, not by the client): the base of links.
    private static func baseURL(_ object: [String: JSONValue]) -> String? {
        guard let domain = object["requestContext"]?["domainName"]?.stringValue, let authority = APIHandler.authority(domain) else { return nil }
        return "https://\(authority)"
    }

    private static func parseV2(_ object: [String: JSONValue], http: JSONValue) -> LambdaEvent {
        var headers: [String: String] = [:]
        for (name, value) in object["headers"]?.objectValue ?? [:] { headers[name.lowercased()] = value.stringValue }
        var cookies: [String] = []
        if case .array(let list)? = object["cookies"] { cookies = list.compactMap(\.stringValue) }
        if !cookies.isEmpty { headers["cookie"] = cookies.joined(separator: "; ") }
        let rawPath = object["rawPath"]?.stringValue ?? http["path"]?.stringValue ?? "/"
        let rawQuery = object["rawQueryString"]?.stringValue ?? ""
        let (path, query) = APIRequest.splitTarget(rawQuery.isEmpty ? rawPath : "\(rawPath)?\(rawQuery)")
        var request = APIRequest(
            method: http["method"]?.stringValue ?? "GET", path: path, query: query, headers: headers, body: body(object))
        request.localBaseURL = baseURL(object)
        request.sourceAddress = http["sourceIp"]?.stringValue.map { String($0.prefix(64)) }
        return .apiGatewayV2(request, cookies: cookies)
    }

    private static func parseV1(_ object: [String: JSONValue], method: String) -> LambdaEvent {
        var headers: [String: String] = [:]
        for (name, value) in object["headers"]?.objectValue ?? [:] { headers[name.lowercased()] = value.stringValue }
        for (name, values) in object["multiValueHeaders"]?.objectValue ?? [:] {
            if case .array(let list) = values, !list.isEmpty {
                headers[name.lowercased()] = list.compactMap(\.stringValue).joined(separator: ",")
            }
        }
        var query: [String: String] = [:]
        for (name, value) in object["queryStringParameters"]?.objectValue ?? [:] { query[name] = value.stringValue }
        for (name, values) in object["multiValueQueryStringParameters"]?.objectValue ?? [:] {
            if case .array(let list) = values, let last = list.last?.stringValue { query[name] = last }
        }
        let path = object["path"]?.stringValue ?? "/"
        var request = APIRequest(method: method, path: path, query: query, headers: headers, body: body(object))
        request.localBaseURL = baseURL(object)
        request.sourceAddress = object["requestContext"]?["identity"]?["sourceIp"]?.stringValue.map { String($0.prefix(64)) }
        return .apiGatewayV1(request)
    }

    private static func parseDirect(_ object: [String: JSONValue], action: String) -> LambdaEvent {
        let id = object["id"]?.stringValue ?? ""
        var headers = ["host": "lambda.invalid"]
        if let key = object["idempotency_key"]?.stringValue { headers["idempotency-key"] = key }
        if let apiKey = object["api_key"]?.stringValue { headers["x-api-key"] = apiKey }
        switch action {
        case "submit":
            let task = object["task"] ?? .object([:])
            return .direct(APIRequest(method: "POST", path: "/v1/tasks", headers: headers, body: task.serialized()))
        case "status":
            return .direct(APIRequest(method: "GET", path: "/v1/tasks/\(id)", headers: headers))
        case "cancel":
            return .direct(APIRequest(method: "DELETE", path: "/v1/tasks/\(id)", headers: headers))
        default:
            // An unknown action: routed nowhere, answered 404 by the handler in the direct shape.
            return .direct(APIRequest(method: "POST", path: "/direct/\(action)", headers: headers))
        }
    }

    /// Encodes `response` in the shape this event's caller expects.
    public func encode(_ response: APIResponse) -> Data {
        let contentType = response.headers["content-type"] ?? ""
        let textual = contentType.hasPrefix("application/json") || contentType.hasPrefix("text/")
        let body: JSONValue = textual || response.body.isEmpty
            ? .string(String(decoding: response.body, as: UTF8.self)) : .string(response.body.base64EncodedString())
        let headers = JSONValue.object(response.headers.mapValues { .string($0) })
        switch self {
        case .apiGatewayV1:
            return JSONValue.object([
                "statusCode": .number(Double(response.status)), "headers": headers,
                "multiValueHeaders": .object(response.headers.mapValues { .array([.string($0)]) }),
                "body": body, "isBase64Encoded": .bool(!(textual || response.body.isEmpty)),
            ]).serialized()
        case .apiGatewayV2:
            return JSONValue.object([
                "statusCode": .number(Double(response.status)), "headers": headers, "body": body,
                "isBase64Encoded": .bool(!(textual || response.body.isEmpty)),
            ]).serialized()
        case .direct:
            let parsed = (try? JSONValue.parse(response.body)) ?? .null
            return JSONValue.object(["status": .number(Double(response.status)), "body": parsed]).serialized()
        }
    }

    /// Whether the event came through API Gateway (whose buffered integrations give up after
    /// 29 s), not a Function URL (`….lambda-url.….on.aws`) or a direct invocation.
    public var isAPIGateway: Bool {
        switch self {
        case .apiGatewayV1: true
        case .apiGatewayV2(let request, _): !(request.localBaseURL ?? "").contains(".lambda-url.")
        case .direct: false
        }
    }

    public var isDirect: Bool {
        if case .direct = self { return true }
        return false
    }

    /// The request inside the event.
    public var request: APIRequest {
        switch self {
        case .apiGatewayV1(let request), .apiGatewayV2(let request, _), .direct(let request): request
        }
    }
}
