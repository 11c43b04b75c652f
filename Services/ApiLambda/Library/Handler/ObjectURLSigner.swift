import Crypto
import Foundation
import SDQPlatform

/// Makes and checks the expiring, HMAC-signed URLs under which the API serves stored objects on
/// the embedded transport (`/v1/objects/{key}?expires=…&signature=…`), the counterpart of S3
/// presigned GET URLs.
public struct ObjectURLSigner: Sendable {
    private let key: SymmetricKey
    /// How long a URL stays valid.
    public var lifetime: Duration

    public init(secret: Data, lifetime: Duration = .seconds(3600)) {
        self.key = SymmetricKey(data: secret)
        self.lifetime = lifetime
    }

    /// What a PUT URL binds besides its key and expiry: the `Content-Type` the upload must send
    /// and the most bytes it may carry.
    public struct UploadTerms: Sendable, Equatable {
        public var contentType: String
        public var maxBytes: Int
        public init(contentType: String, maxBytes: Int) {
            self.contentType = contentType
            self.maxBytes = maxBytes
        }
    }

    /// The signed path and query of a GET of `objectKey`, valid until now + ``lifetime``.
    public func signedPath(for objectKey: String, now: Int64 = EpochClock.nowMillis()) -> String {
        let expires = now / 1000 + lifetime.milliseconds / 1000
        return "/v1/objects/\(Self.encoded(objectKey))?expires=\(expires)&signature=\(signature("GET", objectKey, expires: expires))"
    }

    /// The signed path and query of a PUT of `objectKey` under `terms`, valid until `expires`
    /// (epoch seconds): the URL says `max_bytes`; the content type is only in the signature.
    public func signedUploadPath(for objectKey: String, terms: UploadTerms, expires: Int64) -> String {
        let signature = signature("PUT", objectKey, expires: expires, terms: terms)
        return "/v1/objects/\(Self.encoded(objectKey))?expires=\(expires)&max_bytes=\(terms.maxBytes)&signature=\(signature)"
    }

    private static func encoded(_ objectKey: String) -> String {
        objectKey.split(separator: "/").map {
            $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? String($0)
        }.joined(separator: "/")
    }

    /// Whether `signature` is valid for `method` on `objectKey` (with `terms` for a PUT) and
    /// `expires` (epoch seconds) has not passed.
    public func verify(
        method: String = "GET", objectKey: String, expires: String?, signature: String?, terms: UploadTerms? = nil,
        now: Int64 = EpochClock.nowMillis()
    ) -> Bool {
        guard let expires, let seconds = Int64(expires), let signature, seconds >= now / 1000 else { return false }
        let verb = method == "HEAD" ? "GET" : method
        guard (verb == "PUT") == (terms != nil) else { return false }
        let expected = self.signature(verb, objectKey, expires: seconds, terms: terms)
        // Constant-time comparison.
        guard expected.utf8.count == signature.utf8.count else { return false }
        return zip(expected.utf8, signature.utf8).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    private func signature(_ method: String, _ objectKey: String, expires: Int64, terms: UploadTerms? = nil) -> String {
        var message = "\(method)\n\(objectKey)\n\(expires)"
        if let terms { message += "\n\(terms.contentType)\n\(terms.maxBytes)" }
        let mac = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: key)
        return Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
