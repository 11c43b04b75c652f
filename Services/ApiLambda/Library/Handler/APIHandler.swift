import Crypto
import Foundation
import Logging
import SDQMessages
import SDQPlatform
import Tracing

/// Turns image object keys into the URLs a client receives.
public protocol ObjectURLProvider: Sendable {
    /// A URL for `key`; `request` gives the host the client used.
    func url(forKey key: String, request: APIRequest) async -> String
}

/// The public API (v1), independent of how requests arrive (local HTTP server, Lambda events):
/// `POST /v1/tasks`, `GET /v1/tasks/{id}`, `DELETE /v1/tasks/{id}`, `GET /v1/pools`, `GET /healthz`
/// and, on the embedded transport, signed object downloads under `/v1/objects/`.
///
/// No input produces a 5xx: bad input gets a 4xx JSON error naming the field; only an outage of
/// the stores answers 503 (with `Retry-After`).
public struct APIHandler: Sendable {
    public let context: StackContext
    public let logger: Logger
    /// Accepted API keys (`SDQ_API_KEYS`); empty means open.
    public var apiKeys: Set<String>
    /// Signs embedded object URLs; nil when objects are served elsewhere (S3).
    public var signer: ObjectURLSigner?
    /// Fixed public base URL (`SDQ_PUBLIC_URL`); otherwise derived from the request's Host.
    public var publicBaseURL: String?
    /// Which webhook destinations are accepted (`SDQ_WEBHOOK_ALLOW_PRIVATE`).
    public var webhookPolicy: OutboundURLPolicy

    public init(
        context: StackContext, logger: Logger, apiKeys: [String] = [], signer: ObjectURLSigner? = nil, publicBaseURL: String? = nil,
        webhookPolicy: OutboundURLPolicy = OutboundURLPolicy()
    ) {
        self.context = context
        self.logger = logger
        self.apiKeys = Set(apiKeys)
        self.signer = signer
        self.publicBaseURL = publicBaseURL
        self.webhookPolicy = webhookPolicy
    }

    /// Handles one request. Never throws: every failure is a JSON error response.
    ///
    /// Each request is a server span (parent: the request's `traceparent`, which the Lambda adapter
    /// derives from `Lambda-Runtime-Trace-Id`); a task submitted under it carries the span's
    /// context to the dispatcher and beyond, so the whole task is one trace.
    public func handle(_ request: APIRequest) async -> APIResponse {
        await withSpan(Self.spanName(request), context: TraceCarrier.context(headers: request.headers), ofKind: .server) { span in
            span.attributes["http.request.method"] = request.method
            span.attributes["url.path"] = request.path
            span.attributes["sdq.service"] = "api"
            let response = await respond(request)
            span.attributes["http.response.status_code"] = response.status
            if response.status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            return response
        }
    }

    private func respond(_ request: APIRequest) async -> APIResponse {
        do {
            return try await route(request)
        } catch {
            if error.status >= 500 {
                logger.error("request failed", metadata: ["path": "\(request.path)", "error": "\(error)"])
            }
            return .error(error)
        }
    }

    /// `METHOD /route` with ids replaced by placeholders (low-cardinality span names).
    static func spanName(_ request: APIRequest) -> String {
        let segments = request.path.split(separator: "/").map(String.init)
        let route: String
        switch (segments.first, segments.count) {
        case ("v1", 3) where segments[1] == "tasks": route = "/v1/tasks/{id}"
        case ("v1", _) where segments.count > 2 && segments[1] == "objects": route = "/v1/objects/{key}"
        default: route = "/" + segments.prefix(2).joined(separator: "/")
        }
        return "\(request.method) \(route)"
    }

    private func route(_ request: APIRequest) async throws(APIError) -> APIResponse {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        switch (request.method, segments.first, segments.count) {
        case (_, "healthz", 1):
            try allow(request, ["GET", "HEAD"])
            return .json(200, JSONValue.object(["status": .string("ok")]).serialized())
        case (_, "v1", _) where segments.count >= 2 && segments[1] == "objects":
            try allow(request, ["GET", "HEAD", "PUT"])
            let key = segments.dropFirst(2).joined(separator: "/")
            return request.method == "PUT" ? try await acceptUpload(request, key: key) : try await serveObject(request, key: key)
        case (_, "v1alpha2", 1):
            fallthrough
        case (_, "v1alpha2", 2) where segments[1] == "task":
            try authenticate(request)
            try allow(request, ["POST"])
            return try await submitReference(request)
        case (_, "v1", _):
            try authenticate(request)
            return try await routeV1(request, Array(segments.dropFirst()))
        default:
            throw APIError(status: 404, code: "not_found", message: "no route \(request.path)")
        }
    }

    private func routeV1(_ request: APIRequest, _ segments: [String]) async throws(APIError) -> APIResponse {
        switch (segments.first, segments.count) {
        case ("tasks", 1):
            try allow(request, ["POST"])
            return try await submit(request)
        case ("tasks", 2):
            try allow(request, ["GET", "DELETE"])
            let id = segments[1]
            return request.method == "GET" ? try await status(id, request: request) : try await cancel(id, request: request)
        case ("pools", 1):
            try allow(request, ["GET"])
            return try await listPools()
        case ("uploads", 1):
            try allow(request, ["POST"])
            return try await createUpload(request)
        default:
            throw APIError(status: 404, code: "not_found", message: "no route \(request.path)")
        }
    }

    private func allow(_ request: APIRequest, _ methods: Set<String>) throws(APIError) {
        guard methods.contains(request.method) else {
            throw APIError(
                status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path)",
                allowedMethods: methods.sorted())
        }
    }

    private func authenticate(_ request: APIRequest) throws(APIError) {
        guard !apiKeys.isEmpty else { return }
        let presented = Self.presentedKey(request)
        // Every configured key is compared in full, without an early exit, so timing reveals nothing.
        let matches = apiKeys.reduce(false) { found, key in Self.constantTimeEquals(key, presented ?? "") || found }
        guard presented != nil, matches else {
            throw APIError(status: 401, code: "unauthorized", message: "a valid API key is required (Authorization: Bearer KEY)")
        }
    }

    /// The API key a request presents: `Authorization: Bearer KEY`, else `X-Api-Key`.
    static func presentedKey(_ request: APIRequest) -> String? {
        if let authorization = request.headers["authorization"], authorization.lowercased().hasPrefix("bearer ") {
            return String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }
        return request.headers["x-api-key"]
    }

    /// The tenant a request acts for: `key-` and the first 12 hex digits of the SHA-256 of its API
    /// key (stable, and not the key); nil on an open API.
    func tenant(of request: APIRequest) -> String? {
        guard !apiKeys.isEmpty, let presented = Self.presentedKey(request) else { return nil }
        return "key-" + SHA256.hash(data: Data(presented.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
    }

    /// Compares two strings in time that depends only on their lengths.
    static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let a = Array(lhs.utf8), b = Array(rhs.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }

    // MARK: Reads

    func status(_ id: String, request: APIRequest) async throws(APIError) -> APIResponse {
        guard TaskID.isWellFormed(id) else { throw .notFound(id) }
        let record: TaskRecord?
        do { record = try await context.transport.tasks.get(id: id) } catch { throw .unavailable("\(error)") }
        guard let record else { throw .notFound(id) }
        return .json(200, await document(record, request: request).jsonData())
    }

    func document(_ record: TaskRecord, request: APIRequest) async -> TaskDocument {
        var urls: [String: String] = [:]
        for image in record.images { urls[image.key] = await url(forKey: image.key, request: request) }
        var document = TaskDocument(record: record) { urls[$0.key] ?? "" }
        document.queuePosition = await queuePosition(of: record)
        return document
    }

    /// The approximate place in line of a waiting task, from queue depths (SQS's approximate
    /// counts on AWS), never below 1:
    /// - `queued` (not yet routed): the visible messages on the dispatch queue;
    /// - `dispatched`: the messages that were ahead of it when it joined its pool's lane
    ///   (recorded by the dispatcher; for a normal task the high lane counts as ahead), capped by
    ///   what is visible on those lanes now — the queues are consumed roughly in order, so the
    ///   number ahead only shrinks (a high-priority task that arrives later and overtakes it is
    ///   not counted).
    /// Nil in any other state, or when the depths cannot be read.
    func queuePosition(of record: TaskRecord) async -> Int? {
        switch record.status {
        case .queued:
            guard let depth = try? await context.transport.queue(named: context.names.dispatchQueue).depth() else { return nil }
            return max(1, depth.visible)
        case .dispatched:
            let lanes = context.workerQueue(pool: record.pool)
            guard let high = try? await lanes.high.depth() else { return record.queuePositionAtDispatch }
            var visible = high.visible
            if record.priority != "high" {
                guard let normal = try? await lanes.normal.depth() else { return record.queuePositionAtDispatch }
                visible += normal.visible
            }
            return max(1, min(record.queuePositionAtDispatch ?? visible, visible))
        default:
            return nil
        }
    }

    /// Embedded: a URL of this API with an expiring HMAC signature. AWS: an S3 presigned GET URL.
    private func url(forKey key: String, request: APIRequest) async -> String {
        if let signer { return baseURL(request) + signer.signedPath(for: key) }
        if let presigned = try? await context.transport.objects.presignedGetURL(key: key, expiresIn: .seconds(3600)) {
            return presigned
        }
        return "s3://\(context.transport.objects.bucket)/\(key)"
    }

    /// The base URL clients reach this API at.
    func baseURL(_ request: APIRequest) -> String {
        if let publicBaseURL { return publicBaseURL.hasSuffix("/") ? String(publicBaseURL.dropLast()) : publicBaseURL }
        let scheme = request.headers["x-forwarded-proto"] ?? "http"
        return "\(scheme)://\(request.headers["host"] ?? "localhost")"
    }

    private func listPools() async throws(APIError) -> APIResponse {
        var pools: [JSONValue] = []
        for pool in context.pools.pools {
            var entry: [String: JSONValue] = [
                "name": .string(pool.name), "runtime": .string(pool.runtime), "models": .array(pool.models.map { .string($0) }),
            ]
            if let depth = try? await context.transport.queue(named: context.names.poolQueue(pool.name)).depth() {
                entry["queue"] = .object(["visible": .number(Double(depth.visible)), "in_flight": .number(Double(depth.inFlight))])
            }
            pools.append(.object(entry))
        }
        return .json(200, JSONValue.object(["pools": .array(pools)]).serialized())
    }

    private func serveObject(_ request: APIRequest, key: String) async throws(APIError) -> APIResponse {
        let decoded = key.removingPercentEncoding ?? key
        guard let signer, signer.verify(objectKey: decoded, expires: request.query["expires"], signature: request.query["signature"]) else {
            throw APIError(status: 403, code: "invalid_signature", message: "the object URL is invalid or has expired")
        }
        let object: StoredObject?
        do { object = try await context.transport.objects.get(key: decoded) } catch {
            throw APIError(status: 404, code: "object_not_found", message: "no object \(decoded)")
        }
        guard let object else { throw APIError(status: 404, code: "object_not_found", message: "no object \(decoded)") }
        let body = request.method == "HEAD" ? Data() : object.data
        return APIResponse(
            status: 200,
            headers: ["content-type": object.contentType, "content-length": "\(object.data.count)", "cache-control": "private, max-age=3600"],
            body: body)
    }
}

extension APIHandler {
    /// The handler for a deployment: API keys from `SDQ_API_KEYS`, `SDQ_PUBLIC_URL` for links, and
    /// on the embedded transport a URL signer whose key is kept in the embedded database.
    public static func configured(
        context: StackContext, configuration: SDQConfiguration, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> APIHandler {
        var signer: ObjectURLSigner?
        if let embedded = context.transport as? EmbeddedTransport {
            signer = ObjectURLSigner(secret: try await embedded.secret(named: "object-url-key"))
        }
        return APIHandler(
            context: context, logger: logger, apiKeys: configuration.apiKeys, signer: signer,
            publicBaseURL: environment["SDQ_PUBLIC_URL"],
            webhookPolicy: OutboundURLPolicy(allowPrivate: configuration.webhookAllowPrivate))
    }
}
