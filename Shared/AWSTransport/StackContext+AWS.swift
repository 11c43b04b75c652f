import Foundation
import Logging
import SDQAWS
import SDQPlatform

extension StackContext {
    /// Opens the AWS transport for `configuration` (what the Lambda function, which carries no
    /// embedded transport, runs on); an embedded configuration is refused with a clear error.
    /// Executables that run either transport open it with `StackContext.open` from `SDQStack`.
    public static func openAWS(
        _ configuration: SDQConfiguration, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> StackContext {
        guard configuration.transport == .aws else {
            throw ConfigurationError(message: "this executable runs on the AWS transport only: set SDQ_TRANSPORT=aws", field: "SDQ_TRANSPORT")
        }
        let pools = try PoolConfiguration.load(for: configuration)
        let transport = AWSTransport(environment: AWSEnvironment(environment), names: configuration.names, logger: logger)
        return StackContext(transport: transport, names: configuration.names, pools: pools)
    }
}
