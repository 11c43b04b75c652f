import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDQPlatform

/// A client of the sdq HTTP API (any deployment: `sdq up`, API Gateway, a Function URL).
public struct SDQClient: Sendable {
    /// A failed API call: the server's JSON error, or a transport failure.
    public struct ClientError: CodedError {
        public let code: String
        public let message: String
        public let field: String?
        public let status: Int
    }

    public let baseURL: String
    public let apiKey: String?
    public let client: HTTPClient

    public init(baseURL: String, apiKey: String? = nil, client: HTTPClient = .shared) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.client = client
    }

    /// `POST /v1/tasks` with a JSON body; returns the accepted task's document.
    public func submit(_ body: JSONValue, idempotencyKey: String? = nil) async throws(ClientError) -> TaskDocument {
        var headers = ["Content-Type": "application/json"]
        if let idempotencyKey { headers["Idempotency-Key"] = idempotencyKey }
        let data = try await call("POST", "/v1/tasks", body: body.serialized(), headers: headers, expect: [202])
        return try decode(data)
    }

    /// `GET /v1/tasks/{id}`.
    public func status(_ id: String) async throws(ClientError) -> TaskDocument {
        try decode(try await call("GET", "/v1/tasks/\(id)", expect: [200]))
    }

    /// `DELETE /v1/tasks/{id}`.
    public func cancel(_ id: String) async throws(ClientError) -> TaskDocument {
        try decode(try await call("DELETE", "/v1/tasks/\(id)", expect: [200]))
    }

    /// `DELETE /v1/tasks/{id}?purge=true`: deletes an ended task's data, leaving a tombstone.
    public func purge(_ id: String) async throws(ClientError) -> TaskDocument {
        try decode(try await call("DELETE", "/v1/tasks/\(id)?purge=true", expect: [200]))
    }

    /// A page of the tenant's tasks, newest first.
    public struct TaskList: Sendable {
        public var tasks: [TaskDocument]
        /// The next page's cursor; nil on the last page.
        public var nextCursor: String?
    }

    /// `GET /v1/tasks` with the given filters (nil: not filtered).
    public func list(
        status: TaskStatus? = nil, pool: String? = nil, since: String? = nil, until: String? = nil, limit: Int? = nil,
        cursor: String? = nil
    ) async throws(ClientError) -> TaskList {
        var components = URLComponents()
        let items: [(String, String?)] = [
            ("status", status?.rawValue), ("pool", pool), ("since", since), ("until", until), ("limit", limit.map(String.init)),
            ("cursor", cursor),
        ]
        components.queryItems = items.compactMap { name, value in value.map { URLQueryItem(name: name, value: $0) } }
        let query = components.percentEncodedQuery.map { "?" + $0 } ?? ""
        let data = try await call("GET", "/v1/tasks" + query, expect: [200])
        struct Page: Decodable {
            var tasks: [TaskDocument]
            var next_cursor: String?
        }
        do {
            let page = try JSONDecoder().decode(Page.self, from: data)
            return TaskList(tasks: page.tasks, nextCursor: page.next_cursor)
        } catch {
            throw ClientError(code: "invalid_response", message: "unexpected response: \(error)", field: nil, status: 0)
        }
    }

    /// `GET /v1/usage`: the tenant's usage (every tenant's for an operator key) as JSON.
    public func usage(from: String? = nil, to: String? = nil, groupBy: String? = nil, tenant: String? = nil)
        async throws(ClientError) -> JSONValue
    {
        var components = URLComponents()
        let items: [(String, String?)] = [("from", from), ("to", to), ("group_by", groupBy), ("tenant", tenant)]
        components.queryItems = items.compactMap { name, value in value.map { URLQueryItem(name: name, value: $0) } }
        let query = components.percentEncodedQuery.map { "?" + $0 } ?? ""
        let data = try await call("GET", "/v1/usage" + query, expect: [200])
        do { return try JSONValue.parse(data) } catch {
            throw ClientError(code: "invalid_response", message: "unexpected response: \(error)", field: nil, status: 0)
        }
    }

    /// Downloads an image URL (relative URLs are resolved against the base URL).
    public func download(_ url: String) async throws(ClientError) -> Data {
        let absolute = url.hasPrefix("/") ? baseURL + url : url
        return try await call("GET", absolute, absolute: true, expect: [200])
    }

    /// Polls until the task is terminal, calling `onUpdate` with each document.
    public func wait(
        _ id: String, interval: Duration = .milliseconds(250), timeout: Duration = .seconds(600),
        onUpdate: @Sendable (TaskDocument) -> Void = { _ in }
    ) async throws(ClientError) -> TaskDocument {
        let deadline = ContinuousClock.now + timeout
        while true {
            let document = try await status(id)
            onUpdate(document)
            if document.status.isTerminal { return document }
            guard ContinuousClock.now < deadline else {
                throw ClientError(code: "timeout", message: "task \(id) did not finish in time", field: nil, status: 0)
            }
            do { try await Task.sleep(for: interval) } catch {
                throw ClientError(code: "cancelled", message: "waiting was cancelled", field: nil, status: 0)
            }
        }
    }

    private func decode(_ data: Data) throws(ClientError) -> TaskDocument {
        do { return try JSONDecoder().decode(TaskDocument.self, from: data) } catch {
            throw ClientError(code: "invalid_response", message: "unexpected response: \(error)", field: nil, status: 0)
        }
    }

    private func call(
        _ method: String, _ path: String, absolute: Bool = false, body: Data? = nil, headers: [String: String] = [:],
        expect: Set<Int>
    ) async throws(ClientError) -> Data {
        var request = HTTPClientRequest(url: absolute ? path : baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let apiKey, !absolute { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        if let body { request.body = .bytes(ByteBuffer(data: body)) }
        let status: Int
        let data: Data
        do {
            let response = try await client.execute(request, timeout: .seconds(60))
            status = Int(response.status.code)
            data = Data((try await response.body.collect(upTo: 256 << 20)).readableBytesView)
        } catch {
            throw ClientError(code: "unreachable", message: "cannot reach \(baseURL): \(error)", field: nil, status: 0)
        }
        guard expect.contains(status) else { throw Self.error(status: status, data: data) }
        return data
    }

    /// The error an answer of `status` with body `data` reports (the API's JSON error when it is one).
    static func error(status: Int, data: Data) -> ClientError {
        let json = try? JSONValue.parse(data)
        return ClientError(
            code: json?["error"]?["code"]?.stringValue ?? "http_\(status)",
            message: json?["error"]?["message"]?.stringValue ?? String(decoding: data.prefix(300), as: UTF8.self),
            field: json?["error"]?["field"]?.stringValue, status: status)
    }
}
