import Foundation
import Logging
import SDQAWSTransport
import SDQPlatform

extension StackContext {
    /// Opens the configured transport: the embedded one (`SDQ_TRANSPORT=embedded`, the default)
    /// or AWS. The embedded store provisions its topology on every open (it is local and
    /// idempotent); on AWS, resources are created by `sdq aws init` only, so services need no
    /// create permissions.
    public static func open(
        _ configuration: SDQConfiguration, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> StackContext {
        guard configuration.transport == .embedded else {
            return try openAWS(configuration, logger: logger, environment: environment)
        }
        let pools = try PoolConfiguration.load(for: configuration)
        let transport = try await EmbeddedTransport.open(
            directory: configuration.dataDirectory, names: configuration.names, logger: logger)
        let context = StackContext(transport: transport, names: configuration.names, pools: pools)
        try await transport.provision(context.topology)
        return context
    }
}
