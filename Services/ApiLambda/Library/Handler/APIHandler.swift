import Crypto
import Foundation
import Logging
import SDQAWS
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
    /// Accepted API keys and the tenant of each, re-read from a key file while the API runs.
    public let keys: LiveKeyring
    /// The keys in force now (``APIKeyring``); open when empty.
    public var keyring: APIKeyring { keys.current }
    /// Signs embedded object URLs; nil when objects are served elsewhere (S3).
    public var signer: ObjectURLSigner?
    /// Fixed public base URL (`SDQ_PUBLIC_URL`) of links to this API.
    public var publicBaseURL: String?
    /// Proxies whose `Host`, `X-Forwarded-Host` and `X-Forwarded-Proto` are believed
    /// (`SDQ_TRUSTED_PROXIES`); from anyone else they are ignored.
    public var trustedProxies: [AddressRange] = []
    /// Which webhook destinations are accepted (`SDQ_WEBHOOK_ALLOW_PRIVATE`).
    public var webhookPolicy: OutboundURLPolicy
    /// Queue depths for queue positions and backlogs, read at most once a second per queue.
    var depths = QueueDepthCache()
    /// Signs and checks the tokens of event-stream URLs; nil: streams need a key.
    public var streamTokens: StreamTokens?
    /// Heartbeats, read rate and limits of event streams and `Prefer: wait`.
    public var eventTiming = EventStreamTiming()
    /// The event streams open now.
    public let openStreams = OpenStreams()
    /// The browser console's files (`/console/`).
    public var console = ConsoleAssets()
    /// Recent task durations per pool (ETAs before a task starts).
    let poolDurations = PoolDurations()
    /// How long audit records are kept (`SDQ_AUDIT_RETENTION_DAYS`, default 90).
    public var auditRetention: Duration = .seconds(90 * 86_400)
    /// Repeated security events from one source are recorded once a minute (``AuditThrottle``).
    let auditThrottle = AuditThrottle()
    /// Registered models, read through a short cache (``ModelCatalog``).
    let modelCatalog = ModelCatalog()

    public init(
        context: StackContext, logger: Logger, apiKeys: [String] = [], keyring: APIKeyring? = nil, keys: LiveKeyring? = nil,
        signer: ObjectURLSigner? = nil, publicBaseURL: String? = nil, webhookPolicy: OutboundURLPolicy = OutboundURLPolicy()
    ) {
        self.context = context
        self.logger = logger
        self.keys = keys ?? LiveKeyring(keyring ?? APIKeyring(keys: apiKeys))
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
        await refreshKeys()
        return await withSpan(Self.spanName(request), context: TraceCarrier.context(headers: request.headers), ofKind: .server) { span in
            span.attributes["http.request.method"] = request.method
            span.attributes["url.path"] = request.path
            span.attributes["sdq.service"] = "api"
            let response = await respond(request)
            if response.status == 401 { await auditRefusedKey(request) }
            span.attributes["http.response.status_code"] = response.status
            if response.status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            return response
        }
    }

    /// Re-reads the key file when due (``LiveKeyring``), saying what changed.
    public func refreshKeys() async {
        switch await keys.refreshIfDue() {
        case .notDue, .unchanged: break
        case .changed(let keyring):
            logger.notice("API keys reloaded", metadata: ["tenants": "\(Set(keyring.entries.map(\.tenant.name)).sorted().joined(separator: ","))"])
        case .failed(let error):
            logger.error("cannot re-read the API keys; the ones loaded before stay in force", metadata: ["error": "\(error)"])
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
        case ("v1", 4) where segments[1] == "tasks" && segments[3] == "events": route = "/v1/tasks/{id}/events"
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
            return request.method == "PUT" ? try await acceptUpload(request) : try await serveObject(request, key: key)
        case (_, "console", _):
            return try serveConsole(request, segments)
        case (_, "v1alpha2", 1):
            fallthrough
        case (_, "v1alpha2", 2) where segments[1] == "task":
            let tenant = try authenticate(request)
            try allow(request, ["POST"])
            return try await submitReference(request, tenant: tenant)
        case (_, "v1", _):
            let tenant = try authenticate(request)
            return try await routeV1(request, Array(segments.dropFirst()), tenant: tenant)
        default:
            throw APIError(status: 404, code: "not_found", message: "no route \(request.path)")
        }
    }

    private func routeV1(_ request: APIRequest, _ segments: [String], tenant: Tenant) async throws(APIError) -> APIResponse {
        switch (segments.first, segments.count) {
        case ("tasks", 1):
            try allow(request, ["GET", "POST"])
            return request.method == "GET" ? try await listTasks(request, tenant: tenant) : try await submit(request, tenant: tenant)
        case ("tasks", 2):
            try allow(request, ["GET", "DELETE"])
            let id = segments[1]
            if request.method == "GET" { return try await status(id, request: request, tenant: tenant) }
            switch request.query["purge"] {
            case nil, "false": return try await cancel(id, request: request, tenant: tenant)
            case "true": return try await purge(id, request: request, tenant: tenant)
            default: throw .invalid("purge", "purge must be true or false")
            }
        case ("tasks", 3) where segments[2] == "events":
            try allow(request, ["GET"])
            return try await events(segments[1], request: request, tenant: tenant)
        case ("pools", 1):
            try allow(request, ["GET"])
            return try await listPools(request)
        case ("dead-letters", 1):
            return try await deadLetters(request, tenant: tenant)
        case ("dead-letters", 2) where segments[1] == "redrive":
            return try await redriveDeadLetters(request, tenant: tenant)
        case ("models", 1):
            try allow(request, ["GET"])
            return try await listModels(request, tenant: tenant)
        case ("workers", 1):
            try allow(request, ["GET"])
            return try await listWorkers(request, tenant: tenant)
        case ("tenants", 3) where segments[2] == "tasks":
            try allow(request, ["DELETE"])
            return try await purgeTenant(segments[1], request: request, tenant: tenant)
        case ("audit", 1):
            try allow(request, ["GET"])
            return try await auditLog(request, tenant: tenant)
        case ("usage", 1):
            try allow(request, ["GET"])
            return try await usage(request, tenant: tenant)
        case ("uploads", 1):
            try allow(request, ["POST"])
            return try await createUpload(request, tenant: tenant)
        default:
            throw APIError(status: 404, code: "not_found", message: "no route \(request.path)")
        }
    }

    func allow(_ request: APIRequest, _ methods: Set<String>) throws(APIError) {
        guard methods.contains(request.method) else {
            throw APIError(
                status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path)",
                allowedMethods: methods.sorted())
        }
    }

    /// The tenant a request acts for (``APIKeyring``); 401 when a key is required and missing or unknown.
    func authenticate(_ request: APIRequest) throws(APIError) -> Tenant {
        if Self.presentedKey(request) == nil, let tenant = streamTenant(request) { return tenant }
        guard let tenant = keyring.tenant(presenting: Self.presentedKey(request)) else {
            throw APIError(status: 401, code: "unauthorized", message: "a valid API key is required (Authorization: Bearer KEY)")
        }
        return tenant
    }

    /// The API key a request presents: `Authorization: Bearer KEY`, else `X-Api-Key`.
    static func presentedKey(_ request: APIRequest) -> String? {
        if let authorization = request.headers["authorization"], authorization.lowercased().hasPrefix("bearer ") {
            return String(authorization.dropFirst(7)).trimmingWhitespace()
        }
        return request.headers["x-api-key"]
    }

    /// The tenant a request acts for, or nil when it presents no accepted key.
    func tenant(of request: APIRequest) -> Tenant? {
        keyring.tenant(presenting: Self.presentedKey(request))
    }

    // MARK: Reads

    /// `GET /v1/tasks/{id}`. Another tenant's task answers 404, exactly as a missing one. With
    /// `Prefer: wait=N` it answers when the task ends or after N seconds, whichever is first.
    func status(_ id: String, request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        var record = try await visibleTask(id, tenant: tenant)
        var headers: [String: String] = [:]
        if let (budget, seconds) = waitBudget(request) {
            record = await awaitEnd(of: record, within: budget)
            headers["preference-applied"] = "wait=\(seconds)"
            headers["vary"] = "Prefer"
        }
        poolDurations.record(record)
        return try await documentResponse(200, record, request: request, headers: headers)
    }

    /// The task `id` when `tenant` may see it; 404 otherwise (missing and foreign look the same).
    func visibleTask(_ id: String, tenant: Tenant) async throws(APIError) -> TaskRecord {
        guard TaskID.isWellFormed(id) else { throw .notFound(id) }
        let record: TaskRecord?
        do { record = try await context.transport.tasks.get(id: id) } catch { throw .unavailable("\(error)") }
        guard let record, tenant.mayAccess(ownedBy: record.tenant) else { throw .notFound(id) }
        return record
    }

    /// A task document as a JSON response; a document that cannot be serialised is an error the
    /// client sees, never an empty body.
    func documentResponse(_ status: Int, _ record: TaskRecord, request: APIRequest, headers: [String: String] = [:])
        async throws(APIError) -> APIResponse
    {
        let document = await document(record, request: request)
        do { return .json(status, try document.encoded(), headers: headers) } catch {
            logger.error("task document not serialisable", metadata: ["task_id": "\(record.id)", "error": "\(error)"])
            throw APIError(status: 500, code: "document_unserialisable", message: "task \(record.id) cannot be shown: \(error)", field: "id")
        }
    }

    func document(_ record: TaskRecord, request: APIRequest, withEventsURL: Bool = true) async -> TaskDocument {
        var urls: [String: String] = [:]
        for image in record.images { urls[image.key] = await url(forKey: image.key, request: request) }
        var document = TaskDocument(record: record) { urls[$0.key] ?? "" }
        document.queuePosition = await queuePosition(of: record)
        if !record.status.isTerminal {
            if let key = record.previewKey, let at = record.previewAt {
                document.preview = .init(url: await url(forKey: key, request: request), at: at)
            }
            if withEventsURL { document.eventsURL = eventsURL(of: record, request: request) }
        }
        return document
    }

    /// The approximate place in line of a waiting task, from queue depths (SQS's approximate
    /// counts on AWS, read at most once a second per queue: ``QueueDepthCache``), never below 1:
    /// - `queued` (not yet routed): the messages on the dispatch queue, visible (not yet seen by
    ///   the dispatcher) or in flight (held by it for fair share) — an upper bound under fair
    ///   share, where a tenant with few tasks waiting overtakes a large backlog;
    /// - `dispatched`: the messages that were ahead of it when it joined its pool's lane
    ///   (recorded by the dispatcher; for a normal task the high lane counts as ahead), capped by
    ///   what is visible on those lanes now — the queues are consumed roughly in order, so the
    ///   number ahead only shrinks (a high-priority task that arrives later and overtakes it is
    ///   not counted).
    /// Nil in any other state, or when the depths cannot be read.
    func queuePosition(of record: TaskRecord) async -> Int? {
        switch record.status {
        case .queued:
            guard let depth = await depths.depth(of: context.transport.queue(named: context.names.dispatchQueue)) else { return nil }
            return max(1, depth.visible + depth.inFlight)
        case .dispatched:
            let lanes = context.workerQueue(pool: record.pool)
            guard let high = await depths.depth(of: lanes.high) else { return record.queuePositionAtDispatch }
            var visible = high.visible
            if record.priority != .high {
                guard let normal = await depths.depth(of: lanes.normal) else { return record.queuePositionAtDispatch }
                visible += normal.visible
            }
            return max(1, min(record.queuePositionAtDispatch ?? visible, visible))
        default:
            return nil
        }
    }

    /// Embedded: a URL of this API with an expiring HMAC signature. AWS: an S3 presigned GET URL.
    func url(forKey key: String, request: APIRequest) async -> String {
        if let signer { return baseURL(request) + signer.signedPath(for: key) }
        if let presigned = try? await context.transport.objects.presignedGetURL(key: key, expiresIn: .seconds(3600)) {
            return presigned
        }
        return "s3://\(context.transport.objects.bucket)/\(key)"
    }

    /// The base URL of links to this API: `SDQ_PUBLIC_URL`; else, from a trusted proxy, its
    /// `X-Forwarded-Proto` (http or https) and `X-Forwarded-Host` or `Host` (a host name or
    /// address and port, nothing else); else the address the connection reached.
    func baseURL(_ request: APIRequest) -> String {
        if let publicBaseURL { return publicBaseURL.hasSuffix("/") ? String(publicBaseURL.dropLast()) : publicBaseURL }
        if let peer = request.peerAddress, trustedProxies.contains(where: { $0.contains(peer) }),
            let host = (request.headers["x-forwarded-host"] ?? request.headers["host"]).flatMap(Self.authority)
        {
            // The last value is the one the trusted proxy added; earlier ones came from the client.
            let proto = request.headers["x-forwarded-proto"]?.split(separator: ",").last?.trimmingWhitespace().lowercased()
            return "\(proto == "https" ? "https" : "http")://\(host)"
        }
        return request.localBaseURL ?? "http://localhost"
    }

    /// The last value of `text` when it is a plain authority (`host`, `host:port`, `[v6]:port`),
    /// else nil.
    static func authority(_ text: String) -> String? {
        let value = text.split(separator: ",").last.map { $0.trimmingWhitespace() } ?? ""
        guard !value.isEmpty, value.utf8.count <= 255,
            value.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || ".-:[]".unicodeScalars.contains($0)) }),
            URL(string: "http://\(value)/")?.host != nil
        else { return nil }
        return value
    }

    /// The answer to a request that can be refused from its head alone (a missing or unknown API
    /// key), so that the server does not read its body; nil when the body is needed.
    public func refusalBeforeBody(_ head: APIRequest) -> APIResponse? {
        let first = head.path.split(separator: "/").first
        guard first == "v1alpha2" || (first == "v1" && !head.path.hasPrefix("/v1/objects/")) else { return nil }
        do { _ = try authenticate(head) } catch { return .error(error) }
        return nil
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
        let signer = try await context.transport.localSecret(named: "object-url-key").map { ObjectURLSigner(secret: $0) }
        let keyring = try await APIKeyring.load(environment: environment)
        if keyring.isOpen {
            logger.notice(
                "no API keys configured (SDQ_API_KEYS, SDQ_API_KEYS_FILE): the API is open and every request acts as the one tenant anonymous")
        } else {
            logger.notice("API keys loaded", metadata: ["tenants": "\(keyring.entries.map(\.tenant.name).joined(separator: ","))"])
        }
        // A key file (not SDQ_API_KEYS, which cannot change while the process runs) is re-read
        // every 30 s, so a rotation or revocation takes effect within a minute.
        var reload: LiveKeyring.Loader?
        if let file = environment["SDQ_API_KEYS_FILE"], !file.trimmingWhitespace().isEmpty {
            reload = { () async throws(ConfigurationError) -> APIKeyring in try await APIKeyring.load(environment: environment) }
        }
        var handler = APIHandler(
            context: context, logger: logger, keys: LiveKeyring(keyring, interval: .seconds(30), loader: reload), signer: signer,
            publicBaseURL: configuration.publicURL,
            webhookPolicy: OutboundURLPolicy(allowPrivate: configuration.webhookAllowPrivate))
        // Stream tokens: SDQ_STREAM_TOKEN_SECRET where set (every instance must share it); else a
        // key kept by the embedded store; else one derived from the API keyring.
        let streamSecret: Data
        if let text = environment["SDQ_STREAM_TOKEN_SECRET"], !text.isEmpty {
            streamSecret = Data(text.utf8)
        } else if let secret = try await context.transport.localSecret(named: "stream-token-key") {
            streamSecret = secret
        } else {
            streamSecret = StreamTokens.derivedSecret(from: keyring)
        }
        handler.streamTokens = StreamTokens(secret: streamSecret)
        handler.trustedProxies = try AddressRange.parseList(configuration.trustedProxies, field: "SDQ_TRUSTED_PROXIES")
        if let text = environment["SDQ_AUDIT_RETENTION_DAYS"], !text.isEmpty {
            guard let days = Int(text), (1...3650).contains(days) else {
                throw ConfigurationError(message: "must be a number of days, 1...3650, not \(text)", field: "SDQ_AUDIT_RETENTION_DAYS")
            }
            handler.auditRetention = .seconds(days * 86_400)
        }
        return handler
    }
}
