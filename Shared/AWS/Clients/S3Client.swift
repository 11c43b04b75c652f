import Crypto
import Foundation
import NIOHTTP1

/// An object as read from S3.
public struct S3Object: Sendable, Equatable {
    public var data: Data
    public var contentType: String
}

/// S3 over REST: buckets, lifecycle, whole-object put/get/head/delete and presigned URLs.
/// Path-style addressing is used with a custom endpoint (LocalStack, moto) or a bucket name with
/// dots; virtual-hosted style otherwise.
public struct S3Client: Sendable {
    public let client: AWSHTTPClient

    public init(client: AWSHTTPClient) { self.client = client }

    private var environment: AWSEnvironment { client.environment }

    /// The endpoint and wire path of `key` in `bucket` (key segments percent-encoded once).
    func location(bucket: String, key: String?) -> (endpoint: URL, path: String) {
        let encodedKey = key.map { URIEncoding.encode($0, keepSlash: true) }
        if let custom = environment.customEndpoint(for: "s3") {
            return (custom, "/\(bucket)" + (encodedKey.map { "/\($0)" } ?? ""))
        }
        if bucket.contains(".") {
            return (environment.endpoint(for: "s3"), "/\(bucket)" + (encodedKey.map { "/\($0)" } ?? ""))
        }
        let endpoint = URL(string: "https://\(bucket).s3.\(environment.region).amazonaws.com")!
        return (endpoint, "/" + (encodedKey ?? ""))
    }

    /// Creates a bucket; an existing bucket of ours is fine.
    public func createBucket(_ bucket: String) async throws(AWSError) {
        let (endpoint, path) = location(bucket: bucket, key: nil)
        var body = Data()
        if environment.region != "us-east-1" {
            body = Data(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(environment.region)</LocationConstraint></CreateBucketConfiguration>".utf8)
        }
        do {
            _ = try await client.send(service: "s3", endpoint: endpoint, method: .PUT, path: path, body: body, errorFormat: .xml)
        } catch where error.code == "BucketAlreadyOwnedByYou" {
            return
        }
    }

    /// Sets a lifecycle rule expiring objects under each prefix after `days` days.
    public func putLifecycleExpiration(bucket: String, prefixes: [String], days: Int) async throws(AWSError) {
        let rules = prefixes.enumerated().map { index, prefix in
            "<Rule><ID>sdq-expire-\(index)</ID><Filter><Prefix>\(xmlEscape(prefix))</Prefix></Filter><Status>Enabled</Status>"
                + "<Expiration><Days>\(max(1, days))</Days></Expiration></Rule>"
        }.joined()
        let body = Data("<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\(rules)</LifecycleConfiguration>".utf8)
        let md5 = Data(Insecure.MD5.hash(data: body)).base64EncodedString()
        let (endpoint, path) = location(bucket: bucket, key: nil)
        _ = try await client.send(
            service: "s3", endpoint: endpoint, method: .PUT, path: path, query: "lifecycle",
            headers: [("Content-MD5", md5), ("Content-Type", "application/xml")], body: body, errorFormat: .xml)
    }

    public func putObject(bucket: String, key: String, data: Data, contentType: String) async throws(AWSError) {
        let (endpoint, path) = location(bucket: bucket, key: key)
        _ = try await client.send(
            service: "s3", endpoint: endpoint, method: .PUT, path: path,
            headers: [("Content-Type", contentType), ("Content-Length", String(data.count))], body: data, errorFormat: .xml)
    }

    /// Reads an object; nil when it does not exist.
    public func getObject(bucket: String, key: String) async throws(AWSError) -> S3Object? {
        let (endpoint, path) = location(bucket: bucket, key: key)
        do {
            let response = try await client.send(service: "s3", endpoint: endpoint, method: .GET, path: path, errorFormat: .xml)
            return S3Object(data: response.body, contentType: response.headers["content-type"] ?? "application/octet-stream")
        } catch where error.code == "NoSuchKey" || error.statusCode == 404 {
            return nil
        }
    }

    /// Whether an object exists.
    public func headObject(bucket: String, key: String) async throws(AWSError) -> Bool {
        let (endpoint, path) = location(bucket: bucket, key: key)
        do {
            _ = try await client.send(service: "s3", endpoint: endpoint, method: .HEAD, path: path, errorFormat: .xml)
            return true
        } catch where error.statusCode == 404 {
            return false
        }
    }

    public func deleteObject(bucket: String, key: String) async throws(AWSError) {
        let (endpoint, path) = location(bucket: bucket, key: key)
        _ = try await client.send(service: "s3", endpoint: endpoint, method: .DELETE, path: path, errorFormat: .xml)
    }

    /// A presigned URL for `method` (GET or PUT) valid for `expires` seconds; `headers` are
    /// signed too, so a request must carry them with these values.
    public func presignedURL(method: String, bucket: String, key: String, expires: Int, headers: [(String, String)] = [])
        async throws(AWSError) -> String
    {
        let credentials = try await client.credentials.credentials()
        let (endpoint, path) = location(bucket: bucket, key: key)
        let basePath = endpoint.path == "/" ? "" : endpoint.path
        let host = AWSHTTPClient.hostHeader(endpoint)
        let query = SigV4Signer(service: "s3", region: environment.region).presignedQuery(
            method: method, path: basePath + path, host: host, credentials: credentials, date: Date(), expires: expires,
            signedHeaders: headers)
        return "\(endpoint.scheme ?? "https")://\(host)\(basePath)\(path)?\(query)"
    }
}
