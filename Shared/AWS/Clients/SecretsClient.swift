import Foundation

/// Reads one secret value: Secrets Manager `GetSecretValue` (its `SecretString`) and SSM
/// Parameter Store `GetParameter` with decryption (a `SecureString` or plain parameter). Both are
/// AWS JSON 1.1 services.
public struct SecretsClient: Sendable {
    public let client: AWSHTTPClient

    public init(client: AWSHTTPClient) { self.client = client }

    /// The `SecretString` of the secret `id` (a name or ARN), current version.
    public func secretString(id: String) async throws(AWSError) -> String {
        let answer = try await client.json(
            service: "secretsmanager", target: "secretsmanager.GetSecretValue", ["SecretId": .string(id)], version: "1.1")
        guard let text = answer["SecretString"]?.stringValue else {
            throw AWSError(code: "InvalidResponse", message: "secret \(id) has no SecretString (binary secrets are not read)")
        }
        return text
    }

    /// The decrypted value of the SSM parameter `name`.
    public func parameter(name: String) async throws(AWSError) -> String {
        let answer = try await client.json(
            service: "ssm", target: "AmazonSSM.GetParameter", ["Name": .string(name), "WithDecryption": true], version: "1.1")
        guard let value = answer["Parameter"]?["Value"]?.stringValue else {
            throw AWSError(code: "InvalidResponse", message: "parameter \(name) has no value")
        }
        return value
    }
}
