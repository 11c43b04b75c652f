import AsyncHTTPClient
import Foundation
import Logging
import SDQAWS
import SDQMessages
import SDQPlatform

/// The AWS transport: SQS queues, SNS topics, an S3 bucket and a DynamoDB table, named after
/// `SDQ_STACK`. Endpoints follow `AWS_ENDPOINT_URL[_<SERVICE>]`, so LocalStack and moto work
/// unchanged. Services never create resources; `sdq aws init` does (``provision(_:)``).
public final class AWSTransport: Transport {
    public let environment: AWSEnvironment
    public let names: ResourceNames
    let sqs: SQSClient
    let sns: SNSClient
    let s3: S3Client
    let dynamo: DynamoDBClient
    let resolver: ResourceResolver
    let logger: Logger
    public let objects: any ObjectStore
    public let tasks: any TaskStore

    public init(environment: AWSEnvironment, names: ResourceNames, http: HTTPClient = .aws, logger: Logger) {
        let credentials = CredentialChain.standard(environment: environment, http: http)
        let client = AWSHTTPClient(environment: environment, credentials: credentials, http: http, logger: logger)
        self.environment = environment
        self.names = names
        self.logger = logger
        sqs = SQSClient(client: client)
        sns = SNSClient(client: client)
        s3 = S3Client(client: client)
        dynamo = DynamoDBClient(client: client)
        resolver = ResourceResolver(sqs: sqs, sns: sns, anchorQueue: names.resultsQueue)
        objects = AWSObjectStore(bucket: names.bucket, s3: s3)
        tasks = AWSTaskStore(table: names.tasksTable, dynamo: dynamo)
    }

    public func queue(named name: String) -> any MessageQueue {
        AWSQueue(name: name, sqs: sqs, resolver: resolver)
    }

    public func topic(named name: String) -> any Topic {
        AWSTopic(name: name, sns: sns, resolver: resolver)
    }

    /// Creates (or brings up to date) every resource of `topology`. Running it again changes nothing.
    public func provision(_ topology: Topology) async throws(TransportError) {
        do throws(AWSError) {
            // Dead-letter queues first: the others' redrive policies name them.
            let ordered = topology.queues.filter { $0.deadLetterQueue == nil } + topology.queues.filter { $0.deadLetterQueue != nil }
            for spec in ordered {
                var attributes = [
                    "VisibilityTimeout": String(Self.seconds(spec.visibilityTimeout)),
                    "MessageRetentionPeriod": spec.deadLetterQueue == nil && spec.maxReceiveCount == 0 ? "1209600" : "345600",
                ]
                if let dlq = spec.deadLetterQueue {
                    let dlqARN = try await resolver.queueARN(dlq)
                    attributes["RedrivePolicy"] = "{\"deadLetterTargetArn\":\"\(dlqARN)\",\"maxReceiveCount\":\"\(spec.maxReceiveCount)\"}"
                }
                try await createOrUpdateQueue(spec.name, attributes: attributes)
            }
            for topic in topology.topics { _ = try await resolver.createTopic(topic) }
            for subscription in topology.subscriptions {
                let topicARN = try await resolver.topicARN(subscription.topic)
                let queueURL = try await resolver.queueURL(subscription.queue)
                let queueARN = try await resolver.queueARN(subscription.queue)
                // Let the topic deliver to the queue.
                let policy = """
                    {"Version":"2012-10-17","Statement":[{"Sid":"sdq-sns","Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},\
                    "Action":"sqs:SendMessage","Resource":"\(queueARN)","Condition":{"ArnEquals":{"aws:SourceArn":"\(topicARN)"}}}]}
                    """
                try await sqs.setQueueAttributes(url: queueURL, attributes: ["Policy": policy])
                try await sns.subscribeQueue(topicARN: topicARN, queueARN: queueARN, filterPolicy: subscription.filterPolicy?.jsonString())
            }
            if let storage = topology.storage {
                try await s3.createBucket(storage.bucket)
                try await s3.putLifecycleExpiration(bucket: storage.bucket, prefixes: storage.expiringPrefixes, days: storage.expirationDays)
                try await s3.putDefaultEncryption(bucket: storage.bucket)
                try await dynamo.createTable(name: storage.table, hashKey: "id")
                for _ in 0..<120 {
                    if try await dynamo.tableStatus(name: storage.table) == "ACTIVE" { break }
                    try? await Task.sleep(for: .milliseconds(500))
                }
                try await dynamo.enableTimeToLive(table: storage.table, attribute: AWSTaskStore.ttlAttribute)
                try await dynamo.ensureIndex(table: storage.table, AWSTaskStore.listIndex)
            }
        } catch {
            throw TransportError(aws: error)
        }
    }

    private func createOrUpdateQueue(_ name: String, attributes: [String: String]) async throws(AWSError) {
        do {
            _ = try await sqs.createQueue(name: name, attributes: attributes)
        } catch where ["QueueAlreadyExists", "QueueNameExists"].contains(error.code) {
            // Same name, other attributes (a changed pool configuration): bring them up to date.
            try await sqs.setQueueAttributes(url: try await sqs.getQueueURL(name: name), attributes: attributes)
        }
        await resolver.forget(queue: name)
    }

    /// Whole seconds, rounded up (SQS counts visibility in seconds).
    static func seconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return max(0, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }
}

/// Caches queue URLs, queue ARNs and topic ARNs by name.
///
/// A topic's ARN is derived from the ARN of one of the stack's queues (same partition, region
/// and account), so services need no `sns:CreateTopic` or `sns:ListTopics` permission; only
/// `sdq aws init` creates topics.
actor ResourceResolver {
    let sqs: SQSClient
    let sns: SNSClient
    let anchorQueue: String
    private var queueURLs: [String: String] = [:]
    private var queueARNs: [String: String] = [:]
    private var topicARNs: [String: String] = [:]

    init(sqs: SQSClient, sns: SNSClient, anchorQueue: String) {
        self.sqs = sqs
        self.sns = sns
        self.anchorQueue = anchorQueue
    }

    func queueURL(_ name: String) async throws(AWSError) -> String {
        if let url = queueURLs[name] { return url }
        let url = try await sqs.getQueueURL(name: name)
        queueURLs[name] = url
        return url
    }

    /// Callers waiting for a queue ARN another caller is looking up (one lookup for a burst).
    private var arnLookups: [String: [CheckedContinuation<Result<String, AWSError>, Never>]] = [:]

    func queueARN(_ name: String) async throws(AWSError) -> String {
        if let arn = queueARNs[name] { return arn }
        if arnLookups[name] != nil {
            let result = await withCheckedContinuation { arnLookups[name, default: []].append($0) }
            return try result.get()
        }
        arnLookups[name] = []
        let result: Result<String, AWSError>
        do throws(AWSError) {
            let attributes = try await sqs.getQueueAttributes(url: try await queueURL(name), names: ["QueueArn"])
            guard let arn = attributes["QueueArn"] else { throw AWSError(code: "InvalidResponse", message: "no QueueArn for \(name)") }
            queueARNs[name] = arn
            result = .success(arn)
        } catch {
            result = .failure(error)
        }
        for waiter in arnLookups.removeValue(forKey: name) ?? [] { waiter.resume(returning: result) }
        return try result.get()
    }

    /// The topic's ARN, derived from the anchor queue's ARN (`arn:PARTITION:sqs:REGION:ACCOUNT:…`).
    func topicARN(_ name: String) async throws(AWSError) -> String {
        if let arn = topicARNs[name] { return arn }
        let parts = try await queueARN(anchorQueue).split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { throw AWSError(code: "InvalidResponse", message: "unexpected queue ARN for \(anchorQueue)") }
        let arn = "arn:\(parts[1]):sns:\(parts[3]):\(parts[4]):\(name)"
        topicARNs[name] = arn
        return arn
    }

    /// Creates the topic (idempotent) and remembers its ARN.
    func createTopic(_ name: String) async throws(AWSError) -> String {
        let arn = try await sns.createTopic(name: name)
        topicARNs[name] = arn
        return arn
    }

    func forget(queue name: String) {
        queueURLs.removeValue(forKey: name)
        queueARNs.removeValue(forKey: name)
    }
}

extension TransportError {
    /// An AWS failure as a transport error: code `aws.<AWS code>`, the message with the request id.
    init(aws error: AWSError) {
        self.init(code: "aws.\(error.code)", message: error.description)
    }
}
