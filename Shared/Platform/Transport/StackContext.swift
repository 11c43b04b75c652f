import Foundation
import Logging

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
}
