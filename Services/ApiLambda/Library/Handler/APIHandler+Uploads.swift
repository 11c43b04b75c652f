import Foundation
import SDQPlatform

extension APIHandler {
    /// How long an upload URL stays valid.
    static let uploadLifetime: Duration = .seconds(900)

    /// `POST /v1/uploads`: a URL to `PUT` a large input (an init image) to, and the key a task then
    /// names in `init_image: {"upload": KEY}`. S3 presigned PUT on AWS; on the embedded transport a
    /// signed URL of this API. Optional body: `{"content_type": "image/png"}`.
    func createUpload(_ request: APIRequest) async throws(APIError) -> APIResponse {
        var contentType = "application/octet-stream"
        if !request.body.isEmpty {
            guard let body = try? JSONValue.parse(request.body), case .object(let object) = body else {
                throw APIError(status: 400, code: "invalid_json", message: "the request body must be a JSON object")
            }
            if let value = object["content_type"] {
                guard let text = value.stringValue, text.split(separator: "/", omittingEmptySubsequences: false).count == 2,
                    !text.hasPrefix("/"), !text.hasSuffix("/"), text.unicodeScalars.count <= 100 else {
                    throw .invalid("content_type", "content_type must be a MIME type")
                }
                contentType = text
            }
        }
        let key = "uploads/\(TaskID.generate())"
        let url: String
        if let signer {
            url = baseURL(request) + signer.signedPath(for: key, method: "PUT")
        } else {
            do {
                guard let presigned = try await context.transport.objects.presignedPutURL(key: key, expiresIn: Self.uploadLifetime) else {
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
            "headers": .object(["content-type": .string(contentType)]),
            "max_bytes": .number(Double(context.pools.limits.maxUploadBytes)),
            "expires_at": .number(Double(EpochClock.nowMillis() + Self.uploadLifetime.milliseconds)),
        ])
        return .json(201, body.serialized(), headers: ["location": url])
    }

    /// `PUT /v1/objects/uploads/…` with a signed URL from ``createUpload(_:)`` (embedded transport).
    func acceptUpload(_ request: APIRequest, key: String) async throws(APIError) -> APIResponse {
        let decoded = key.removingPercentEncoding ?? key
        guard decoded.hasPrefix("uploads/"), let signer,
            signer.verify(method: "PUT", objectKey: decoded, expires: request.query["expires"], signature: request.query["signature"])
        else { throw APIError(status: 403, code: "invalid_signature", message: "the upload URL is invalid or has expired") }
        let limit = context.pools.limits.maxUploadBytes
        guard !request.bodyTooLarge, request.body.count <= limit else {
            throw APIError(status: 413, code: "body_too_large", message: "an upload may be at most \(limit) bytes")
        }
        guard !request.body.isEmpty else { throw APIError(status: 400, code: "empty_upload", message: "the upload is empty") }
        do {
            try await context.transport.objects.put(
                key: decoded, data: request.body, contentType: request.headers["content-type"] ?? "application/octet-stream")
        } catch { throw .unavailable("\(error)") }
        return .json(200, JSONValue.object(["key": .string(decoded), "size": .number(Double(request.body.count))]).serialized())
    }
}
