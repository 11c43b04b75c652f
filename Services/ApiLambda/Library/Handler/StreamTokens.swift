import Crypto
import Foundation
import SDQPlatform

/// Short-lived signed tokens that let a browser's `EventSource` (which cannot send an
/// `Authorization` header) open one task's event stream: `GET /v1/tasks/{id}/events?token=…`.
///
/// A token names its tenant, its task and its expiry, and carries an HMAC-SHA256 of the three
/// under the deployment's stream-token key; it grants nothing but that one stream. The status
/// document of a task that is not over hands one out in `events_url`.
///
/// Format: `v1.<tenant, base64url>.<expiry, epoch seconds>.<signature, base64url>`.
public struct StreamTokens: Sendable {
    let key: SymmetricKey
    /// How long a token is valid after it is issued.
    public var lifetime: Duration

    public init(secret: Data, lifetime: Duration = .seconds(600)) {
        key = SymmetricKey(data: secret)
        self.lifetime = lifetime
    }

    /// A key derived from the API keyring (the digests of its keys), for deployments that set no
    /// stream-token secret: stable across instances that share the keyring, and changed by any
    /// key's rotation.
    public static func derivedSecret(from keyring: APIKeyring) -> Data {
        var material = Data("sdq stream tokens v1".utf8)
        for entry in keyring.entries.sorted(by: { $0.tenant.name < $1.tenant.name }) {
            material.append(Data(entry.tenant.name.utf8))
            material.append(Data(entry.digest))
        }
        return Data(SHA256.hash(data: material))
    }

    /// A token for `tenant` to read the events of `taskID`, valid from `now` (epoch ms).
    public func issue(tenant: String, taskID: String, now: Int64) -> String {
        let expires = now / 1000 + Int64(lifetime.components.seconds)
        let name = Self.base64url(Data(tenant.utf8))
        return "v1.\(name).\(expires).\(signature(name: name, expires: expires, taskID: taskID))"
    }

    /// The tenant a token speaks for, when it is well formed, signed with this key for `taskID`
    /// and not expired at `now` (epoch ms); nil otherwise.
    public func verify(_ token: String, taskID: String, now: Int64) -> String? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard token.utf8.count <= 512, parts.count == 4, parts[0] == "v1", let expires = Int64(parts[2]), expires * 1000 > now,
            let nameData = Self.data(base64url: parts[1]), let tenant = String(data: nameData, encoding: .utf8),
            let given = Self.data(base64url: parts[3])
        else { return nil }
        let message = Data("\(parts[1]).\(expires).\(taskID)".utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: message, using: key) else { return nil }
        return tenant
    }

    private func signature(name: String, expires: Int64, taskID: String) -> String {
        Self.base64url(Data(HMAC<SHA256>.authenticationCode(for: Data("\(name).\(expires).\(taskID)".utf8), using: key)))
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func data(base64url text: String) -> Data? {
        var text = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text)
    }
}
