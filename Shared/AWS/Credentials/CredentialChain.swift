import AsyncHTTPClient
import Foundation

/// Tries sources in order and uses the first that answers, as the AWS SDKs do: environment, web
/// identity (IRSA), container (ECS, EKS Pod Identity), EC2 IMDSv2. The answer is cached and
/// refreshed `refreshMargin` before it expires; concurrent callers share one refresh.
public actor CredentialChain: CredentialProvider {
    private let sources: [(name: String, provider: any CredentialProvider)]
    private let refreshMargin: TimeInterval
    private var cached: AWSCredentials?
    private var refreshing: Task<AWSCredentials, any Error>?

    public init(sources: [(name: String, provider: any CredentialProvider)], refreshMargin: TimeInterval = 300) {
        self.sources = sources
        self.refreshMargin = refreshMargin
    }

    /// The standard chain for `environment`.
    public static func standard(environment: AWSEnvironment, http: HTTPClient = .aws) -> CredentialChain {
        let variables = environment.variables
        var sources: [(String, any CredentialProvider)] = [("environment", EnvironmentCredentialProvider(variables: variables))]
        if let tokenFile = variables["AWS_WEB_IDENTITY_TOKEN_FILE"], !tokenFile.isEmpty, let role = variables["AWS_ROLE_ARN"], !role.isEmpty {
            let sts = environment.customEndpoint(for: "sts") ?? URL(string: "https://sts.\(environment.region).amazonaws.com")!
            sources.append(("web identity", WebIdentityCredentialProvider(
                tokenFile: tokenFile, roleARN: role, sessionName: variables["AWS_ROLE_SESSION_NAME"], stsEndpoint: sts, http: http)))
        }
        if let container = ContainerCredentialProvider.fromEnvironment(variables, http: http) {
            sources.append(("container", container))
        }
        if variables["AWS_EC2_METADATA_DISABLED"]?.lowercased() != "true" {
            let endpoint = variables["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254"
            sources.append(("imds", IMDSCredentialProvider(endpoint: endpoint, http: http)))
        }
        return CredentialChain(sources: sources)
    }

    public func credentials() async throws(AWSError) -> AWSCredentials {
        if let cached, !needsRefresh(cached) { return cached }
        let task: Task<AWSCredentials, any Error>
        if let refreshing {
            task = refreshing
        } else {
            let sources = self.sources
            // One refresh shared by all callers; it ends with this call (awaited below).
            task = Task { try await Self.resolve(sources) }
            refreshing = task
        }
        do {
            let fresh = try await task.value
            cached = fresh
            refreshing = nil
            return fresh
        } catch {
            refreshing = nil
            if let cached, let expiration = cached.expiration, expiration > Date() { return cached }  // still valid: keep using it
            throw (error as? AWSError) ?? credentialsError("\(error)")
        }
    }

    private func needsRefresh(_ credentials: AWSCredentials) -> Bool {
        guard let expiration = credentials.expiration else { return false }
        return expiration.timeIntervalSinceNow < refreshMargin
    }

    private static func resolve(_ sources: [(name: String, provider: any CredentialProvider)]) async throws -> AWSCredentials {
        var failures: [String] = []
        for source in sources {
            do {
                return try await source.provider.credentials()
            } catch {
                failures.append("\(source.name): \(error.message)")
            }
        }
        throw credentialsError("no credentials found (" + failures.joined(separator: "; ") + ")")
    }
}
