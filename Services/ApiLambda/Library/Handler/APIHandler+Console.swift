import Foundation
import SDQPlatform

extension APIHandler {
    /// The content security policy of the console's pages: its own scripts and styles only; images
    /// from the API (`/v1/objects`) or a presigned object store URL.
    static let consolePolicy =
        "default-src 'self'; img-src 'self' data: blob: https: http:; connect-src 'self'; style-src 'self'; script-src 'self'; "
        + "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    /// `GET /console/…`: the browser console's files (`/console` redirects to `/console/`).
    func serveConsole(_ request: APIRequest, _ segments: [String]) throws(APIError) -> APIResponse {
        try allow(request, ["GET", "HEAD"])
        if segments.count == 1 && !request.path.hasSuffix("/") {
            return APIResponse(status: 308, headers: ["location": "/console/", "cache-control": "no-store"])
        }
        let name = segments.dropFirst().joined(separator: "/")
        guard let file = console.file(name) else {
            throw APIError(status: 404, code: "not_found", message: "the console has no file \(name)", field: "path")
        }
        var headers = [
            "content-type": file.contentType, "etag": file.etag, "cache-control": "no-cache",
            "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
        ]
        if file.contentType.hasPrefix("text/html") { headers["content-security-policy"] = Self.consolePolicy }
        if request.headers["if-none-match"] == file.etag { return APIResponse(status: 304, headers: headers) }
        return APIResponse(status: 200, headers: headers, body: request.method == "HEAD" ? Data() : file.bytes)
    }
}
