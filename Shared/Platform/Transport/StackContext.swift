import Foundation
import Logging
import SDQAWS

/// What every service is given: the transport, the stack's resource names and the pools.
public struct StackContext: Sendable {
    public let transport: any Transport
    public let names: ResourceNames
    public let pools: PoolConfiguration

    public init(transport: any Transport, names: ResourceNames, pools: PoolConfiguration) {
        self.transport = transport
        self.names = names
        self.pools = pools
    }

    /// The standard topology of this stack.
    public var topology: Topology { Topology.standard(names: names, pools: pools) }

    /// Opens the configured transport. The embedded store provisions its topology on every open
    /// (it is local and idempotent); on AWS, resources are created by `sdq aws init` only, so
    /// services need no create permissions.
    public static func open(
        _ configuration: SDQConfiguration, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> StackContext {
        let pools = try PoolConfiguration.load(for: configuration)
        let names = configuration.names
        let transport: any Transport
        switch configuration.transport {
        case .embedded:
            transport = try await EmbeddedTransport.open(
                directory: configuration.dataDirectory, names: names, logger: logger)
        case .aws:
            transport = AWSTransport(environment: AWSEnvironment(environment), names: names, logger: logger)
        }
        let context = StackContext(transport: transport, names: names, pools: pools)
        if configuration.transport == .embedded { try await transport.provision(context.topology) }
        return context
    }
}
