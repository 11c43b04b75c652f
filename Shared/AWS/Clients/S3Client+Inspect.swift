import Foundation
import NIOHTTP1

extension S3Client {
    /// One lifecycle expiration rule as S3 reports it.
    public struct ExpirationRule: Sendable, Equatable {
        public var prefix: String
        public var days: Int?
        public var enabled: Bool
    }

    /// Whether the bucket exists and this identity may use it (`HeadBucket`): nil when it does,
    /// else the error (404: missing; 403: not ours or no access).
    public func headBucket(_ bucket: String) async -> AWSError? {
        let (endpoint, path) = location(bucket: bucket, key: nil)
        do {
            _ = try await client.send(service: "s3", endpoint: endpoint, method: .HEAD, path: path, errorFormat: .xml)
            return nil
        } catch {
            return error
        }
    }

    /// The bucket's lifecycle expiration rules (`GetBucketLifecycleConfiguration`); empty when it
    /// has none.
    public func lifecycleExpirations(bucket: String) async throws(AWSError) -> [ExpirationRule] {
        let (endpoint, path) = location(bucket: bucket, key: nil)
        let response: AWSResponse
        do {
            response = try await client.send(service: "s3", endpoint: endpoint, method: .GET, path: path, query: "lifecycle", errorFormat: .xml)
        } catch where error.code == "NoSuchLifecycleConfiguration" {
            return []
        }
        guard let document = XMLNode.parse(response.body) else { return [] }
        return document.all("Rule").map { rule in
            let prefix = rule.first("Filter")?.first("Prefix")?.text ?? rule.child("Prefix") ?? ""
            let days = rule.first("Expiration")?.child("Days").flatMap { Int($0) }
            return ExpirationRule(prefix: prefix, days: days, enabled: rule.child("Status") == "Enabled")
        }
    }

    /// The bucket's default encryption algorithm (`AES256`, `aws:kms`…), nil when none is set.
    public func defaultEncryption(bucket: String) async throws(AWSError) -> String? {
        let (endpoint, path) = location(bucket: bucket, key: nil)
        let response: AWSResponse
        do {
            response = try await client.send(service: "s3", endpoint: endpoint, method: .GET, path: path, query: "encryption", errorFormat: .xml)
        } catch where error.code == "ServerSideEncryptionConfigurationNotFoundError" {
            return nil
        }
        return XMLNode.parse(response.body)?.first("SSEAlgorithm")?.text
    }

    /// Sets the bucket's default encryption to SSE-S3 (`AES256`), as AWS does for new buckets.
    public func putDefaultEncryption(bucket: String) async throws(AWSError) {
        let body = Data(
            ("<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule>"
                + "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"
                + "</Rule></ServerSideEncryptionConfiguration>").utf8)
        let (endpoint, path) = location(bucket: bucket, key: nil)
        _ = try await client.send(
            service: "s3", endpoint: endpoint, method: .PUT, path: path, query: "encryption",
            headers: [("Content-Type", "application/xml")], body: body, errorFormat: .xml)
    }
}
