import AsyncHTTPClient
import Foundation
import SDQAWS

/// Where a deployment's key file lives (`SDQ_API_KEYS_FILE`).
public enum APIKeyringSource: Sendable, Equatable {
    /// A file on disk.
    case file(String)
    /// `secretsmanager:ID`: the `SecretString` of a Secrets Manager secret (name or ARN).
    case secretsManager(String)
    /// `ssm:NAME`: an SSM parameter (a `SecureString` is decrypted).
    case parameter(String)

    public init(_ text: String) {
        if text.hasPrefix("secretsmanager:") {
            self = .secretsManager(String(text.dropFirst("secretsmanager:".count)))
        } else if text.hasPrefix("ssm:") {
            self = .parameter(String(text.dropFirst("ssm:".count)))
        } else {
            self = .file(text)
        }
    }
}

extension APIKeyring {
    /// The keyring a service starts with: from `SDQ_API_KEYS_FILE` when set (read once, at
    /// start), else from `SDQ_API_KEYS`, else open. Both set, an unreadable file, or a list that
    /// yields no key refuse to start.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment, http: HTTPClient = .aws
    ) async throws(ConfigurationError) -> APIKeyring {
        func value(_ name: String) -> String? {
            guard let raw = environment[name], !raw.trimmingWhitespace().isEmpty else { return nil }
            return raw
        }
        let list = value("SDQ_API_KEYS")
        guard let file = value("SDQ_API_KEYS_FILE")?.trimmingWhitespace() else {
            return try list.map { raw throws(ConfigurationError) in try parse(list: raw) } ?? .open
        }
        guard list == nil else {
            throw ConfigurationError(message: "set SDQ_API_KEYS or SDQ_API_KEYS_FILE, not both", field: "SDQ_API_KEYS_FILE")
        }
        let source = APIKeyringSource(file)
        let text: String
        switch source {
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(message: "cannot read \(path)", field: "SDQ_API_KEYS_FILE")
            }
            text = String(decoding: data, as: UTF8.self)
        case .secretsManager(let id), .parameter(let id):
            let aws = AWSEnvironment(environment)
            let client = SecretsClient(
                client: AWSHTTPClient(environment: aws, credentials: CredentialChain.standard(environment: aws, http: http), http: http))
            do {
                if case .secretsManager = source { text = try await client.secretString(id: id) } else { text = try await client.parameter(name: id) }
            } catch {
                throw ConfigurationError(message: "cannot read \(file): \(error)", field: "SDQ_API_KEYS_FILE")
            }
        }
        return try parse(file: text, source: file)
    }
}
