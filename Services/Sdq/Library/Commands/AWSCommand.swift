import ArgumentParser
import Foundation
import Logging
import SDQAWS
import SDQAWSTransport
import SDQPlatform

/// `sdq aws …`: AWS resources of a stack.
struct AWSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aws", abstract: "Manage the AWS resources of a stack.", subcommands: [AWSInitCommand.self])
}

/// `sdq aws init`: creates, idempotently, every resource `SDQ_STACK` and the pool configuration
/// need: the tasks and notifications topics; the dispatch, pool and results queues, each with a
/// dead-letter queue and redrive policy; the dispatch subscription (raw delivery); the bucket
/// with a lifecycle rule expiring results; the task table with TTL. Honours `AWS_ENDPOINT_URL`
/// (LocalStack, moto). Running it again changes nothing.
struct AWSInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Create the stack's AWS resources.")

    func run() async throws {
        try await reportingFailures {
            let (configuration, logger) = try prepareEnvironment(defaultLevel: .warning)
            let pools = try PoolConfiguration.load(for: configuration)
            let names = configuration.names
            let transport = AWSTransport(environment: AWSEnvironment(), names: names, logger: logger)
            let topology = Topology.standard(names: names, pools: pools)
            try await transport.provision(topology)
            print("stack \(names.stack) ready in \(transport.environment.region)")
            for queue in topology.queues { print("  queue  \(queue.name)" + (queue.deadLetterQueue.map { "  (dead letters: \($0))" } ?? "")) }
            for topic in topology.topics { print("  topic  \(topic)") }
            if let storage = topology.storage {
                print("  bucket \(storage.bucket)  (objects expire after \(storage.expirationDays) days)")
                print("  table  \(storage.table)  (TTL on \(AWSTaskStore.ttlAttributeName))")
            }
        }
    }
}
