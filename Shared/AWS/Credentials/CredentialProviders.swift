import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A source of AWS credentials.
public protocol CredentialProvider: Sendable {
    /// Current credentials; throws `AWSError` with code `CredentialsError` when the source has none.
    func credentials() async throws(AWSError) -> AWSCredentials
}

func credentialsError(_ message: String) -> AWSError {
    AWSError(code: "CredentialsError", message: message)
}

/// Fixed credentials.
public struct StaticCredentialProvider: CredentialProvider {
    public let value: AWSCredentials
    public init(_ value: AWSCredentials) { self.value = value }
    public func credentials() async throws(AWSError) -> AWSCredentials { value }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
public struct EnvironmentCredentialProvider: CredentialProvider {
    public let variables: [String: String]
    public init(variables: [String: String]) { self.variables = variables }

    public func credentials() async throws(AWSError) -> AWSCredentials {
        guard let key = variables["AWS_ACCESS_KEY_ID"], !key.isEmpty, let secret = variables["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty
        else { throw credentialsError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set") }
        let token = variables["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token)
    }
}

/// IRSA and other web identities: reads the token file (`AWS_WEB_IDENTITY_TOKEN_FILE`) and calls
/// STS `AssumeRoleWithWebIdentity` for `AWS_ROLE_ARN` (an unsigned Query call).
public struct WebIdentityCredentialProvider: CredentialProvider {
    public let tokenFile: String
    public let roleARN: String
    public let sessionName: String
    public let stsEndpoint: URL
    public let http: HTTPClient

    public init(tokenFile: String, roleARN: String, sessionName: String?, stsEndpoint: URL, http: HTTPClient = .aws) {
        self.tokenFile = tokenFile
        self.roleARN = roleARN
        self.sessionName = sessionName ?? "sdq-\(Int(Date().timeIntervalSince1970))"
        self.stsEndpoint = stsEndpoint
        self.http = http
    }

    public func credentials() async throws(AWSError) -> AWSCredentials {
        guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8).trimmingWhitespace(),
            !token.isEmpty
        else { throw credentialsError("cannot read the web identity token at \(tokenFile)") }
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", roleARN),
            ("RoleSessionName", sessionName), ("WebIdentityToken", token),
        ].map { "\($0.0)=\(URIEncoding.encode($0.1, keepSlash: false))" }.joined(separator: "&")
        var request = HTTPClientRequest(url: stsEndpoint.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")
        request.body = .bytes(ByteBuffer(string: form))
        let (status, body) = try await fetch(http, request)
        guard status == 200 else {
            let error = AWSError.fromXML(status: status, headers: [:], body: body)
            throw AWSError(code: error.code, message: "AssumeRoleWithWebIdentity: \(error.message)", requestID: error.requestID, statusCode: status)
        }
        guard let document = XMLNode.parse(body), let result = document.first("Credentials"),
            let key = result.child("AccessKeyId"), let secret = result.child("SecretAccessKey")
        else { throw credentialsError("AssumeRoleWithWebIdentity answered without credentials") }
        return AWSCredentials(
            accessKeyID: key, secretAccessKey: secret, sessionToken: result.child("SessionToken"),
            expiration: result.child("Expiration").flatMap(parseISO8601))
    }
}

/// ECS/Fargate task roles (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on 169.254.170.2) and EKS Pod
/// Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
public struct ContainerCredentialProvider: CredentialProvider {
    public let url: String
    public let authorizationToken: String?
    public let authorizationTokenFile: String?
    public let http: HTTPClient

    public init(url: String, authorizationToken: String? = nil, authorizationTokenFile: String? = nil, http: HTTPClient = .aws) {
        self.url = url
        self.authorizationToken = authorizationToken
        self.authorizationTokenFile = authorizationTokenFile
        self.http = http
    }

    /// The provider the environment describes, if any. `ecsHost` is where relative URIs point.
    public static func fromEnvironment(
        _ variables: [String: String], ecsHost: String = "http://169.254.170.2", http: HTTPClient = .aws
    ) -> ContainerCredentialProvider? {
        let token = variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let tokenFile = variables["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        if let relative = variables["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            return ContainerCredentialProvider(url: ecsHost + relative, authorizationToken: token, authorizationTokenFile: tokenFile, http: http)
        }
        if let full = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !full.isEmpty {
            return ContainerCredentialProvider(url: full, authorizationToken: token, authorizationTokenFile: tokenFile, http: http)
        }
        return nil
    }

    public func credentials() async throws(AWSError) -> AWSCredentials {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        var token = authorizationToken
        if let authorizationTokenFile {
            guard let text = try? String(contentsOfFile: authorizationTokenFile, encoding: .utf8) else {
                throw credentialsError("cannot read the container authorization token at \(authorizationTokenFile)")
            }
            token = text.trimmingWhitespace()
        }
        if let token { request.headers.add(name: "Authorization", value: token) }
        let (status, body) = try await fetch(http, request, timeout: .seconds(5))
        guard status == 200 else { throw credentialsError("container credentials endpoint answered \(status)") }
        return try decodeCredentialJSON(body, source: "container credentials")
    }
}

/// EC2 instance profiles through IMDSv2: a session token (`PUT /latest/api/token`), the role name,
/// then the role's credentials. `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves the endpoint and
/// `AWS_EC2_METADATA_DISABLED=true` turns the source off.
public struct IMDSCredentialProvider: CredentialProvider {
    public let endpoint: String
    public let http: HTTPClient

    public init(endpoint: String = "http://169.254.169.254", http: HTTPClient = .aws) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.http = http
    }

    public func credentials() async throws(AWSError) -> AWSCredentials {
        var tokenRequest = HTTPClientRequest(url: endpoint + "/latest/api/token")
        tokenRequest.method = .PUT
        tokenRequest.headers.add(name: "X-aws-ec2-metadata-token-ttl-seconds", value: "21600")
        let (tokenStatus, tokenBody) = try await fetch(http, tokenRequest, timeout: .seconds(1))
        guard tokenStatus == 200 else { throw credentialsError("IMDS token request answered \(tokenStatus)") }
        let token = String(decoding: tokenBody, as: UTF8.self)

        func get(_ path: String) async throws(AWSError) -> Data {
            var request = HTTPClientRequest(url: endpoint + path)
            request.method = .GET
            request.headers.add(name: "X-aws-ec2-metadata-token", value: token)
            let (status, body) = try await fetch(http, request, timeout: .seconds(2))
            guard status == 200 else { throw credentialsError("IMDS \(path) answered \(status)") }
            return body
        }
        let roles = String(decoding: try await get("/latest/meta-data/iam/security-credentials/"), as: UTF8.self)
        guard let role = roles.split(separator: "\n").first.map({ $0.trimmingWhitespace() }), !role.isEmpty else {
            throw credentialsError("the instance has no IAM role")
        }
        let body = try await get("/latest/meta-data/iam/security-credentials/\(role)")
        if let code = (try? JSONValue.parse(body))?["Code"]?.stringValue, code != "Success" {
            throw credentialsError("IMDS credentials: \(code)")
        }
        return try decodeCredentialJSON(body, source: "IMDS")
    }
}

func fetch(_ http: HTTPClient, _ request: HTTPClientRequest, timeout: TimeAmount = .seconds(10)) async throws(AWSError) -> (Int, Data) {
    do {
        let response = try await http.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), Data(body.readableBytesView))
    } catch {
        throw credentialsError("\(request.url): \(error)")
    }
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` (container endpoints and IMDS).
func decodeCredentialJSON(_ body: Data, source: String) throws(AWSError) -> AWSCredentials {
    guard let object = try? JSONValue.parse(body),
        let key = object["AccessKeyId"]?.stringValue, let secret = object["SecretAccessKey"]?.stringValue
    else { throw credentialsError("\(source) answered without credentials") }
    return AWSCredentials(
        accessKeyID: key, secretAccessKey: secret, sessionToken: object["Token"]?.stringValue,
        expiration: object["Expiration"]?.stringValue.flatMap(parseISO8601))
}

func parseISO8601(_ text: String) -> Date? { UTCTime.date(internetTimestamp: text) }
