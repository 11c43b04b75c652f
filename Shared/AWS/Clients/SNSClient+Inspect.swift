extension SNSClient {
    /// A topic's or subscription's attributes as a dictionary (the `entry` key/value list).
    static func entries(_ document: XMLNode) -> [String: String] {
        var attributes: [String: String] = [:]
        for entry in document.all("entry") {
            if let key = entry.child("key") { attributes[key] = entry.child("value") ?? "" }
        }
        return attributes
    }

    /// The topic's attributes (`GetTopicAttributes`); throws `NotFound` for a missing topic.
    public func topicAttributes(topicARN: String) async throws(AWSError) -> [String: String] {
        Self.entries(try await client.query(service: "sns", action: "GetTopicAttributes", version: Self.version, [("TopicArn", topicARN)]))
    }

    /// The subscription's attributes (`GetSubscriptionAttributes`): `RawMessageDelivery`,
    /// `FilterPolicy`, `Endpoint`…
    public func subscriptionAttributes(arn: String) async throws(AWSError) -> [String: String] {
        Self.entries(
            try await client.query(service: "sns", action: "GetSubscriptionAttributes", version: Self.version, [("SubscriptionArn", arn)]))
    }
}
