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

    /// The signed path and query for `method` (`GET` or `PUT`) on `objectKey`, valid until now + ``lifetime``.
    public func signedPath(for objectKey: String, method: String = "GET", now: Int64 = EpochClock.nowMillis()) -> String {
        let expires = now / 1000 + lifetime.milliseconds / 1000
        let encodedKey = objectKey.split(separator: "/").map {
            $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? String($0)
        }.joined(separator: "/")
        return "/v1/objects/\(encodedKey)?expires=\(expires)&signature=\(signature(method, objectKey, expires: expires))"
    }

    /// Whether `signature` is valid for `method` on `objectKey` and `expires` (epoch seconds) has not passed.
    public func verify(
        method: String = "GET", objectKey: String, expires: String?, signature: String?, now: Int64 = EpochClock.nowMillis()
    ) -> Bool {
        guard let expires, let seconds = Int64(expires), let signature, seconds >= now / 1000 else { return false }
        let expected = self.signature(method == "HEAD" ? "GET" : method, objectKey, expires: seconds)
        // Constant-time comparison.
        guard expected.utf8.count == signature.utf8.count else { return false }
        return zip(expected.utf8, signature.utf8).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    private func signature(_ method: String, _ objectKey: String, expires: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(method)\n\(objectKey)\n\(expires)".utf8), using: key)
        return Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
