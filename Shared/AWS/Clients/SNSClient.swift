import Foundation

/// SNS over the AWS Query protocol.
public struct SNSClient: Sendable {
    public let client: AWSHTTPClient
    static let version = "2010-03-31"

    public init(client: AWSHTTPClient) { self.client = client }

    /// Creates a topic (idempotent) and returns its ARN.
    public func createTopic(name: String) async throws(AWSError) -> String {
        let document = try await client.query(service: "sns", action: "CreateTopic", version: Self.version, [("Name", name)])
        guard let arn = document.first("TopicArn")?.text, !arn.isEmpty else {
            throw AWSError(code: "InvalidResponse", message: "CreateTopic answered without TopicArn")
        }
        return arn
    }

    /// Publishes a message with string attributes; returns the message id.
    @discardableResult
    public func publish(topicARN: String, message: String, attributes: [String: String]) async throws(AWSError) -> String {
        var parameters = [("TopicArn", topicARN), ("Message", message)]
        for (index, (name, value)) in attributes.sorted(by: { $0.key < $1.key }).enumerated() {
            let prefix = "MessageAttributes.entry.\(index + 1)"
            parameters += [("\(prefix).Name", name), ("\(prefix).Value.DataType", "String"), ("\(prefix).Value.StringValue", value)]
        }
        let document = try await client.query(service: "sns", action: "Publish", version: Self.version, parameters)
        return document.first("MessageId")?.text ?? ""
    }

    /// A subscription as listed.
    public struct Subscription: Sendable, Equatable {
        public var arn: String
        public var protocolName: String
        public var endpoint: String
    }

    /// Subscriptions of a topic (all pages).
    public func listSubscriptions(topicARN: String) async throws(AWSError) -> [Subscription] {
        var result: [Subscription] = []
        var token: String?
        repeat {
            var parameters = [("TopicArn", topicARN)]
            if let token { parameters.append(("NextToken", token)) }
            let document = try await client.query(service: "sns", action: "ListSubscriptionsByTopic", version: Self.version, parameters)
            for member in document.all("member") {
                result.append(Subscription(
                    arn: member.child("SubscriptionArn") ?? "", protocolName: member.child("Protocol") ?? "",
                    endpoint: member.child("Endpoint") ?? ""))
            }
            let next = document.first("NextToken")?.text ?? ""
            token = next.isEmpty ? nil : next
        } while token != nil
        return result
    }

    /// Subscribes an SQS queue with raw message delivery and an optional filter policy; an existing
    /// subscription of the same queue is updated instead. Returns the subscription ARN.
    @discardableResult
    public func subscribeQueue(topicARN: String, queueARN: String, filterPolicy: String?) async throws(AWSError) -> String {
        if let existing = try await listSubscriptions(topicARN: topicARN).first(where: { $0.protocolName == "sqs" && $0.endpoint == queueARN }),
            existing.arn.hasPrefix("arn:")
        {
            try await setSubscriptionAttribute(arn: existing.arn, name: "RawMessageDelivery", value: "true")
            if let filterPolicy { try await setSubscriptionAttribute(arn: existing.arn, name: "FilterPolicy", value: filterPolicy) }
            return existing.arn
        }
        var parameters = [
            ("TopicArn", topicARN), ("Protocol", "sqs"), ("Endpoint", queueARN), ("ReturnSubscriptionArn", "true"),
            ("Attributes.entry.1.key", "RawMessageDelivery"), ("Attributes.entry.1.value", "true"),
        ]
        if let filterPolicy {
            parameters += [("Attributes.entry.2.key", "FilterPolicy"), ("Attributes.entry.2.value", filterPolicy)]
        }
        let document = try await client.query(service: "sns", action: "Subscribe", version: Self.version, parameters)
        return document.first("SubscriptionArn")?.text ?? ""
    }

    public func setSubscriptionAttribute(arn: String, name: String, value: String) async throws(AWSError) {
        _ = try await client.query(
            service: "sns", action: "SetSubscriptionAttributes", version: Self.version,
            [("SubscriptionArn", arn), ("AttributeName", name), ("AttributeValue", value)])
    }
}
