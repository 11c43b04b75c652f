import Foundation
import SDQAWSTransport
import SDQPlatform
import Testing
import Yams

/// The deployment manifests name exactly the resources `sdq aws init` creates for the same stack
/// name and pool configuration (`deploy/pools.yaml`, stack `sdq`), with the same queue settings.
@Suite struct DeploymentNamesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let stack = "sdq"

    static func pools() throws -> PoolConfiguration {
        try PoolConfiguration.load(path: root.appendingPathComponent("deploy/pools.yaml").path)
    }

    static func topology() throws -> Topology { Topology.standard(names: ResourceNames(stack: stack), pools: try pools()) }

    static func yaml(_ path: String) throws -> [String: Any] {
        let text = try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    /// A `{"Fn::Sub": "${Stack}-x"}` (or plain string) name, with the stack substituted.
    static func name(_ value: Any?) -> String? {
        if let text = value as? String { return text.replacingOccurrences(of: "${Stack}", with: stack) }
        if let sub = (value as? [String: Any])?["Fn::Sub"] as? String { return sub.replacingOccurrences(of: "${Stack}", with: stack) }
        return nil
    }

    /// Every resource's properties of `type` in a CloudFormation template.
    static func resources(_ template: [String: Any], type: String) -> [[String: Any]] {
        ((template["Resources"] as? [String: Any]) ?? [:]).values.compactMap { $0 as? [String: Any] }
            .filter { $0["Type"] as? String == type }.compactMap { $0["Properties"] as? [String: Any] }
    }

    static func parameterDefault(_ template: [String: Any], _ name: String) -> Int? {
        let value = ((template["Parameters"] as? [String: Any])?[name] as? [String: Any])?["Default"]
        return (value as? Int) ?? (value as? String).flatMap(Int.init)
    }

    @Test func theSAMTemplateCreatesWhatAwsInitCreates() throws {
        let topology = try Self.topology()
        let pools = try Self.pools()
        let template = try Self.yaml("deploy/sam/template.yaml")
        #expect(((template["Parameters"] as? [String: Any])?["Stack"] as? [String: Any])?["Default"] as? String == Self.stack)

        let queues = Self.resources(template, type: "AWS::SQS::Queue")
        #expect(Set(queues.compactMap { Self.name($0["QueueName"]) }) == Set(topology.queues.map(\.name)))
        let topics = Self.resources(template, type: "AWS::SNS::Topic").compactMap { Self.name($0["TopicName"]) }
        #expect(Set(topics) == Set(topology.topics))
        let storage = try #require(topology.storage)
        #expect(Self.resources(template, type: "AWS::S3::Bucket").compactMap { Self.name($0["BucketName"]) } == [storage.bucket])
        let tables = Self.resources(template, type: "AWS::DynamoDB::Table")
        #expect(tables.compactMap { Self.name($0["TableName"]) } == [storage.table])
        let ttl = tables.first?["TimeToLiveSpecification"] as? [String: Any]
        #expect(ttl?["AttributeName"] as? String == AWSTaskStore.ttlAttributeName)
        #expect(((tables.first?["KeySchema"] as? [[String: Any]])?.first)?["AttributeName"] as? String == "id")

        // Settings: redrive count, worker-lane visibility, object expiry.
        #expect(Self.parameterDefault(template, "MaxReceiveCount") == pools.queues.maxReceiveCount)
        #expect(Self.parameterDefault(template, "WorkerVisibilityTimeoutSeconds") == pools.queues.workerVisibilityTimeoutSeconds)
        #expect(Self.parameterDefault(template, "TaskTtlDays") == storage.expirationDays)
        let lanes = Set(pools.pools.flatMap { ResourceNames(stack: Self.stack).workerQueues($0.name) })
        for queue in queues where lanes.contains(Self.name(queue["QueueName"]) ?? "") {
            #expect((queue["VisibilityTimeout"] as? [String: Any])?["Ref"] as? String == "WorkerVisibilityTimeoutSeconds")
        }
        for spec in topology.queues where spec.deadLetterQueue != nil && !lanes.contains(spec.name) {
            let queue = queues.first { Self.name($0["QueueName"]) == spec.name }
            #expect(queue?["VisibilityTimeout"] as? Int == Int(spec.visibilityTimeout.components.seconds), "\(spec.name)")
        }
        let bucket = Self.resources(template, type: "AWS::S3::Bucket").first
        let rules = ((bucket?["LifecycleConfiguration"] as? [String: Any])?["Rules"] as? [[String: Any]]) ?? []
        #expect(Set(rules.compactMap { $0["Prefix"] as? String }) == Set(storage.expiringPrefixes))

        // The tasks topic delivers raw to the dispatch queue, as `aws init` subscribes it.
        let subscriptions = Self.resources(template, type: "AWS::SNS::Subscription")
        #expect(subscriptions.count == topology.subscriptions.count)
        #expect(subscriptions.allSatisfy { $0["RawMessageDelivery"] as? Bool == true || $0["RawMessageDelivery"] as? String == "true" })
    }

    /// Every value of a `{Name: QueueName, Value: …}` metric dimension anywhere in `node`.
    static func queueDimensions(_ node: Any) -> [String] {
        if let dictionary = node as? [String: Any] {
            if dictionary["Name"] as? String == "QueueName", let value = name(dictionary["Value"]) { return [value] }
            return dictionary.values.flatMap(queueDimensions)
        }
        if let array = node as? [Any] { return array.flatMap(queueDimensions) }
        return []
    }

    @Test func theECSScalingWatchesBothLanesOfEveryPoolByTheirRealNames() throws {
        let topology = try Self.topology()
        let names = ResourceNames(stack: Self.stack)
        let template = try Self.yaml("deploy/ecs/services.yaml")
        let watched = Set(Self.queueDimensions(template["Resources"] ?? [:]))
        #expect(!watched.isEmpty)
        #expect(watched.isSubset(of: Set(topology.queues.map(\.name))), "\(watched.subtracting(topology.queues.map(\.name)))")
        for pool in try Self.pools().pools {
            #expect(watched.isSuperset(of: names.workerQueues(pool.name)), "pool \(pool.name)")
        }
        #expect(((template["Parameters"] as? [String: Any])?["Stack"] as? [String: Any])?["Default"] as? String == Self.stack)
    }

    @Test func theEKSScaledObjectsWatchBothLanesOfEveryPoolByTheirRealNames() throws {
        let topology = try Self.topology()
        let names = ResourceNames(stack: Self.stack)
        let text = try String(contentsOf: Self.root.appendingPathComponent("deploy/eks/base/keda.yaml"), encoding: .utf8)
        var watched: [String: Set<String>] = [:]  // ScaledObject name → queue names
        for document in try Yams.load_all(yaml: text) {
            guard let object = document as? [String: Any], object["kind"] as? String == "ScaledObject" else { continue }
            let name = (object["metadata"] as? [String: Any])?["name"] as? String ?? "?"
            let triggers = ((object["spec"] as? [String: Any])?["triggers"] as? [[String: Any]]) ?? []
            watched[name] = Set(triggers.compactMap {
                (($0["metadata"] as? [String: Any])?["queueURL"] as? String)?.split(separator: "/").last.map(String.init)
            })
        }
        let all = watched.values.reduce(into: Set<String>()) { $0.formUnion($1) }
        #expect(all.isSubset(of: Set(topology.queues.map(\.name))), "\(all.subtracting(topology.queues.map(\.name)))")
        for pool in try Self.pools().pools {
            #expect(watched.values.contains { $0 == Set(names.workerQueues(pool.name)) }, "pool \(pool.name): \(watched)")
        }
    }
}
