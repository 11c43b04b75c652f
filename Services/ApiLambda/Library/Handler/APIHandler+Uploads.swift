import Foundation
import SDQPlatform

/// An upload `PUT` whose URL checked out, before any of its body is read.
public struct UploadGrant: Sendable, Equatable {
    /// The object key (`uploads/<tenant>/<id>`).
    public var key: String
    /// The content type the URL was signed for (and the request sent).
    public var contentType: String
    /// The most bytes the body may have.
    public var maxBytes: Int
}

extension APIHandler {
    /// How long an upload URL stays valid: the URL's own expiry and the answer's `expires_at`.
    static let uploadLifetime: Duration = .seconds(900)

    /// Whether `key` is an upload of `tenant`: exactly `uploads/<tenant>/<id>`. On an open API,
    /// keys of the form `uploads/<id>` made before uploads had owners are accepted too.
    static func upload(_ key: String, belongsTo tenant: Tenant) -> Bool {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 3, parts[0] == "uploads", parts[1] == tenant.name, TaskID.isWellFormed(parts[2]) { return true }
        return tenant == .anonymous && parts.count == 2 && parts[0] == "uploads" && TaskID.isWellFormed(parts[1])
    }

    /// `POST /v1/uploads`: a URL to `PUT` a large input (an init image) to, and the key a task then
    /// names in `init_image: {"upload": KEY}`. Optional body: `{"content_type": "image/png",
    /// "size": BYTES}`.
    ///
    /// The URL is bound to what the answer says: `PUT` only, for `expires_at` (900 s), with the
    /// declared `Content-Type`, at most `size` (or `max_bytes`) bytes, and once — a second upload
    /// to the same key is refused. Keys belong to the tenant that asked (`uploads/<tenant>/…`).
    /// S3 presigned PUT on AWS (content type, `If-None-Match: *` and `Content-Length` signed, so S3
    /// enforces them); on the embedded transport a signed URL of this API.
    func createUpload(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        var contentType = "application/octet-stream"
        let limit = context.pools.limits.maxUploadBytes
        var size: Int?
        if !request.body.isEmpty {
            let body: JSONValue
            do { body = try JSONValue.parse(request.body) } catch { throw APIError.unparsable(error) }
            guard case .object(let object) = body else {
                throw APIError(status: 400, code: "invalid_json", message: "the request body must be a JSON object")
            }
            if let unknown = object.keys.filter({ !["content_type", "size"].contains($0) }).sorted().first {
                throw APIError(status: 400, code: "unknown_field", message: "\(unknown) is not an upload field", field: unknown)
            }
            if let value = object["content_type"] {
                guard let text = value.stringValue, Self.isMIMEType(text) else { throw .invalid("content_type", "content_type must be a MIME type") }
                contentType = text
            }
            if let value = object["size"] {
                guard let bytes = value.integerValue, bytes >= 1, bytes <= limit else {
                    throw .invalid("size", "size must be an integer 1...\(limit)")
                }
                size = Int(bytes)
            }
        }
        let key = "uploads/\(tenant.name)/\(TaskID.generate())"
        let expires = EpochClock.nowMillis() / 1000 + Self.uploadLifetime.milliseconds / 1000
        let maxBytes = size ?? limit
        var required: [(String, String)] = [("content-type", contentType)]
        let url: String
        if let signer {
            let terms = ObjectURLSigner.UploadTerms(contentType: contentType, maxBytes: maxBytes)
            url = baseURL(request) + signer.signedUploadPath(for: key, terms: terms, expires: expires)
        } else {
            // A presigned PUT cannot sign a maximum, only an exact length: on S3 the size is required.
            guard let size else {
                throw APIError(
                    status: 400, code: "missing_field", message: "size (the upload's exact length in bytes) is required on this deployment",
                    field: "size")
            }
            required.append(("if-none-match", "*"))
            required.append(("content-length", String(size)))
            do {
                guard let presigned = try await context.transport.objects.presignedPutURL(
                    key: key, expiresIn: Self.uploadLifetime, headers: required)
                else {
                    throw APIError(status: 501, code: "uploads_unsupported", message: "this deployment cannot accept uploads")
                }
                url = presigned
            } catch let error as APIError {
                throw error
            } catch {
                throw .unavailable("\(error)")
            }
        }
        let body = JSONValue.object([
            "key": .string(key), "url": .string(url), "method": .string("PUT"),
            "headers": .object(Dictionary(required.map { ($0.0, JSONValue.string($0.1)) }, uniquingKeysWith: { $1 })),
            "max_bytes": .number(Double(maxBytes)),
            "expires_at": .number(Double(expires * 1000)),
        ])
        return .json(201, body.serialized(), headers: ["location": url])
    }

    private static func isMIMEType(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty && text.unicodeScalars.count <= 100
            && text.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 32 && $0.value < 127 }
    }

    /// Checks an upload `PUT /v1/objects/uploads/…` from its head alone — signature, expiry,
    /// content type, declared length — so a refused request costs no body bytes.
    public func grantUpload(path: String, query: [String: String], headers: [String: String]) throws(APIError) -> UploadGrant {
        let raw = path.split(separator: "/", omittingEmptySubsequences: true).dropFirst(2).joined(separator: "/")
        let key = raw.removingPercentEncoding ?? raw
        let contentType = headers["content-type"] ?? "application/octet-stream"
        guard key.hasPrefix("uploads/"), let signer, let maxBytes = query["max_bytes"].flatMap(Int.init),
            signer.verify(
                method: "PUT", objectKey: key, expires: query["expires"], signature: query["signature"],
                terms: ObjectURLSigner.UploadTerms(contentType: contentType, maxBytes: maxBytes))
        else {
            throw APIError(
                status: 403, code: "invalid_signature",
                message: "the upload URL is invalid or has expired, or the request's Content-Type is not the one it was made for")
        }
        if let length = headers["content-length"].flatMap(Int.init), length > maxBytes {
            throw APIError.uploadTooLarge(maxBytes)
        }
        return UploadGrant(key: key, contentType: contentType, maxBytes: maxBytes)
    }

    /// Where upload bodies are streamed to before ``completeUpload(_:file:size:)``; nil when the
    /// API takes no uploads itself (S3).
    public var uploadStagingDirectory: URL? {
        context.transport.uploadStagingDirectory
    }

    /// Stores a streamed upload body (`file`, `size` bytes) under a grant: once per key. The
    /// staged file is gone afterwards either way.
    public func completeUpload(_ grant: UploadGrant, file: URL, size: Int) async -> APIResponse {
        defer { try? FileManager.default.removeItem(at: file) }
        guard size <= grant.maxBytes else {
            return .error(APIError.uploadTooLarge(grant.maxBytes))
        }
        guard size > 0 else { return .error(APIError(status: 400, code: "empty_upload", message: "the upload is empty")) }
        let created: Bool?
        do { created = try await context.transport.objects.createFromFile(key: grant.key, file: file, contentType: grant.contentType) } catch {
            return .error(.unavailable("\(error)"))
        }
        guard let created else {
            return .error(APIError(status: 501, code: "uploads_unsupported", message: "this deployment cannot accept uploads"))
        }
        guard created else {
            return .error(APIError(status: 409, code: "upload_exists", message: "\(grant.key) was uploaded already; ask for a new upload URL"))
        }
        return .json(200, JSONValue.object(["key": .string(grant.key), "size": .number(Double(size))]).serialized())
    }

    /// `PUT /v1/objects/uploads/…` handed over whole (Lambda events, tests): the same checks as
    /// the streaming path of ``APIHTTPServer``.
    func acceptUpload(_ request: APIRequest) async throws(APIError) -> APIResponse {
        let grant = try grantUpload(path: request.path, query: request.query, headers: request.headers)
        guard !request.bodyTooLarge else {
            throw APIError.uploadTooLarge(grant.maxBytes)
        }
        guard let staging = uploadStagingDirectory else {
            throw APIError(status: 501, code: "uploads_unsupported", message: "this deployment cannot accept uploads")
        }
        let file = staging.appendingPathComponent(UUID().uuidString)
        do {
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
            try request.body.write(to: file)
        } catch { throw .unavailable("cannot stage the upload: \(error)") }
        return await completeUpload(grant, file: file, size: request.body.count)
    }
}
