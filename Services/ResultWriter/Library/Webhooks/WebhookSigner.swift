import Crypto
import Foundation

/// Signs webhook deliveries in the Standard Webhooks style: headers `webhook-id`,
/// `webhook-timestamp` (epoch seconds) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
/// `id.timestamp.body`, keyed with the secret's bytes (`whsec_` followed by base64).
public struct WebhookSigner: Sendable {
    /// A secret that is not `whsec_` followed by non-empty base64.
    public struct InvalidSecret: Error, Sendable, CustomStringConvertible {
        public var description: String { "a webhook secret is whsec_ followed by base64" }
    }

    let key: SymmetricKey

    public init(secret: String) throws(InvalidSecret) {
        guard secret.hasPrefix("whsec_"), let bytes = Data(base64Encoded: String(secret.dropFirst(6))), !bytes.isEmpty else {
            throw InvalidSecret()
        }
        key = SymmetricKey(data: bytes)
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    public func signature(id: String, timestamp: Int64, body: Data) -> String {
        var message = Data("\(id).\(timestamp).".utf8)
        message.append(body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
        return "v1," + Data(mac).base64EncodedString()
    }

    /// The three headers of a delivery.
    public func headers(id: String, timestamp: Int64, body: Data) -> [(String, String)] {
        [("webhook-id", id), ("webhook-timestamp", String(timestamp)), ("webhook-signature", signature(id: id, timestamp: timestamp, body: body))]
    }
}
