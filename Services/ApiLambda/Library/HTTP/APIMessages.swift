import Foundation
import SDQPlatform
import Synchronization

/// A transport-neutral HTTP request: what the local HTTP server and (later) Lambda events hand
/// to ``APIHandler``.
public struct APIRequest: Sendable, Equatable {
    public var method: String
    /// The path without the query, e.g. `/v1/tasks/abc`.
    public var path: String
    /// Decoded query parameters (last value wins).
    public var query: [String: String]
    /// Header names are lower-cased.
    public var headers: [String: String]
    public var body: Data
    /// Set when the body exceeded the transport's limit (the body is then empty).
    public var bodyTooLarge: Bool
    /// The address of the connection's other end, when the transport knows it; `Host` and
    /// `X-Forwarded-*` are believed only when it is a trusted proxy.
    public var peerAddress: String?
    /// The client's address as a front door that terminates the connection reports it (the
    /// Lambda event's `sourceIp`); believed as it is. Nil on a plain connection.
    public var sourceAddress: String?
    /// This server as the connection reached it (`http://address:port`), the base of links when
    /// no public URL is configured and no trusted proxy says otherwise.
    public var localBaseURL: String?
    /// How long the front door lets an answer take, when it cuts answers off (a buffered API
    /// Gateway route's 29 s, the Lambda deadline); nil: no limit but the API's own
    /// (``APIHandler/maxWait``). Caps `Prefer: wait` and ends event streams in time.
    public var answerWithin: Duration?
    /// Whether the front door passes a response on as it is written (the HTTP server, a Lambda in
    /// response-streaming mode); when false, an event stream ends at its first news so that the
    /// buffered answer reaches the client.
    public var streamsResponses = true

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:], body: Data = Data(),
        bodyTooLarge: Bool = false
    ) {
        self.method = method.uppercased()
        self.path = path
        self.query = query
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { $1 })
        self.body = body
        self.bodyTooLarge = bodyTooLarge
    }

    /// Splits a request target (`/path?x=1`) into path and decoded query.
    public static func splitTarget(_ target: String) -> (path: String, query: [String: String]) {
        guard let components = URLComponents(string: target) else { return (target, [:]) }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
        return (components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath, query)
    }
}

/// A response body written piece by piece (server-sent events): `produce` is called once with a
/// function that sends a piece to the client, and returns when the body is complete. A send that
/// throws means the client has gone; `produce` then returns (or throws) and holds nothing more.
public struct ResponseStream: Sendable {
    public let produce: @Sendable (_ send: (Data) async throws -> Void) async throws -> Void

    public init(_ produce: @escaping @Sendable (_ send: (Data) async throws -> Void) async throws -> Void) {
        self.produce = produce
    }

    /// The whole body, for front doors that cannot stream (it must end on its own).
    public func collected() async -> Data {
        let buffer = DataBuffer()
        try? await produce { buffer.append($0) }
        return buffer.data
    }
}

/// Bytes appended from concurrent code.
final class DataBuffer: Sendable {
    private let storage = Mutex(Data())
    func append(_ data: Data) { storage.withLock { $0.append(data) } }
    var data: Data { storage.withLock { $0 } }
}

/// A transport-neutral HTTP response.
public struct APIResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data
    /// A body written as it happens, instead of `body` (event streams).
    public var stream: ResponseStream?

    public init(status: Int, headers: [String: String] = [:], body: Data = Data(), stream: ResponseStream? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
    }

    public static func == (a: APIResponse, b: APIResponse) -> Bool {
        a.status == b.status && a.headers == b.headers && a.body == b.body && (a.stream == nil) == (b.stream == nil)
    }

    /// The response with a streamed body run to its end (for front doors that buffer).
    public func collected() async -> APIResponse {
        guard let stream else { return self }
        return APIResponse(status: status, headers: headers, body: await stream.collected())
    }

    /// A JSON response.
    public static func json(_ status: Int, _ data: Data, headers: [String: String] = [:]) -> APIResponse {
        var all = headers
        all["content-type"] = "application/json"
        return APIResponse(status: status, headers: all, body: data)
    }

    /// A JSON error response: `{"error": {"code", "message", "field"}}`.
    public static func error(_ error: APIError) -> APIResponse {
        var object: [String: JSONValue] = ["code": .string(error.code), "message": .string(error.message)]
        object["field"] = error.field.map { .string($0) } ?? .null
        var headers = error.headers
        if error.status == 503 { headers["retry-after"] = "2" }
        if error.status == 401 { headers["www-authenticate"] = "Bearer" }
        if !error.allowedMethods.isEmpty { headers["allow"] = error.allowedMethods.joined(separator: ", ") }
        return json(error.status, JSONValue.object(["error": .object(object)]).serialized(), headers: headers)
    }
}

/// An API error with its HTTP status, stable code and offending field.
public struct APIError: CodedError, Equatable {
    public let status: Int
    public let code: String
    public let message: String
    public let field: String?
    /// The methods a 405 answer allows (its `Allow` header).
    public let allowedMethods: [String]
    /// Further response headers (a 429's `Retry-After` and `RateLimit` fields), lower-case names.
    public let headers: [String: String]

    public init(
        status: Int, code: String, message: String, field: String? = nil, allowedMethods: [String] = [], headers: [String: String] = [:]
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.allowedMethods = allowedMethods
        self.headers = headers
    }

    /// The same error naming another field.
    func naming(_ field: String?) -> APIError {
        APIError(status: status, code: code, message: message, field: field, allowedMethods: allowedMethods, headers: headers)
    }

    static func invalid(_ field: String, _ message: String) -> APIError {
        APIError(status: 400, code: "invalid_field", message: message, field: field)
    }
    /// A `pool` no configuration has (submission and list filters answer it alike).
    static func unknownPool(_ name: String) -> APIError {
        APIError(status: 422, code: "unknown_pool", message: "no pool named \(name)", field: "pool")
    }
    static func missing(_ field: String) -> APIError {
        APIError(status: 400, code: "missing_field", message: "\(field) is required", field: field)
    }
    /// A request body that is not JSON, or nests deeper than ``JSONValue/defaultMaxDepth``.
    static func unparsable(_ error: JSONValue.ParseError) -> APIError {
        switch error {
        case .tooDeep(let limit):
            APIError(status: 400, code: "json_too_deep", message: "the request body nests arrays and objects deeper than \(limit) levels")
        case .invalid:
            APIError(status: 400, code: "invalid_json", message: "the request body is not valid JSON")
        }
    }
    /// An upload body larger than its URL allows.
    package static func uploadTooLarge(_ maxBytes: Int) -> APIError {
        APIError(status: 413, code: "body_too_large", message: "this upload may be at most \(maxBytes) bytes")
    }
    static func notFound(_ id: String) -> APIError {
        APIError(status: 404, code: "task_not_found", message: "no task \(id)", field: "id")
    }
    package static func unavailable(_ detail: String) -> APIError {
        APIError(status: 503, code: "unavailable", message: "the service is temporarily unavailable: \(detail)")
    }
}
