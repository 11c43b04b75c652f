import Foundation

/// Region and endpoints as the AWS SDKs resolve them from the environment.
public struct AWSEnvironment: Sendable {
    public let variables: [String: String]
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    public let region: String

    public init(_ variables: [String: String] = ProcessInfo.processInfo.environment) {
        self.variables = variables
        self.region = [variables["AWS_REGION"], variables["AWS_DEFAULT_REGION"]].compactMap { $0 }.first { !$0.isEmpty } ?? "us-east-1"
    }

    /// The endpoint of `service` (`sqs`, `sns`, `s3`, `dynamodb`, `sts`): `AWS_ENDPOINT_URL_<SERVICE>`,
    /// else `AWS_ENDPOINT_URL`, else the public regional endpoint.
    public func endpoint(for service: String) -> URL {
        if let custom = customEndpoint(for: service) { return custom }
        let host = service == "s3" ? "s3.\(region).amazonaws.com" : "\(service).\(region).amazonaws.com"
        return URL(string: "https://\(host)")!
    }

    /// The configured endpoint override of `service`, if any.
    public func customEndpoint(for service: String) -> URL? {
        let specific = "AWS_ENDPOINT_URL_" + service.uppercased().replacingOccurrences(of: "-", with: "_")
        for name in [specific, "AWS_ENDPOINT_URL"] {
            if let value = variables[name], !value.isEmpty, let url = URL(string: value), url.host != nil { return url }
        }
        return nil
    }

    /// `AWS_MAX_ATTEMPTS` (default 4).
    public var maxAttempts: Int { variables["AWS_MAX_ATTEMPTS"].flatMap(Int.init).map { max(1, $0) } ?? 4 }
}
