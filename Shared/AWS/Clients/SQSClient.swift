import Foundation

/// A received SQS message.
public struct SQSMessage: Sendable, Equatable {
    public var messageID: String
    public var receiptHandle: String
    public var body: String
    /// String message attributes.
    public var attributes: [String: String]
    /// System attributes (`ApproximateReceiveCount`, `SentTimestamp`, `AWSTraceHeader`…).
    public var systemAttributes: [String: String]
}

/// SQS over the AWS JSON 1.0 protocol.
public struct SQSClient: Sendable {
    public let client: AWSHTTPClient

    public init(client: AWSHTTPClient) { self.client = client }

    private func call(_ operation: String, _ payload: [String: Any], timeout: Int64? = nil) async throws(AWSError) -> [String: Any] {
        try await client.json(service: "sqs", target: "AmazonSQS.\(operation)", payload, timeout: timeout.map { .seconds($0) })
    }

    /// Creates a queue (or returns the URL of an existing one with the same attributes).
    public func createQueue(name: String, attributes: [String: String]) async throws(AWSError) -> String {
        let response = try await call("CreateQueue", ["QueueName": name, "Attributes": attributes])
        guard let url = response["QueueUrl"] as? String else { throw invalid("CreateQueue") }
        return url
    }

    public func getQueueURL(name: String) async throws(AWSError) -> String {
        let response = try await call("GetQueueUrl", ["QueueName": name])
        guard let url = response["QueueUrl"] as? String else { throw invalid("GetQueueUrl") }
        return url
    }

    public func getQueueAttributes(url: String, names: [String] = ["All"]) async throws(AWSError) -> [String: String] {
        let response = try await call("GetQueueAttributes", ["QueueUrl": url, "AttributeNames": names])
        return response["Attributes"] as? [String: String] ?? [:]
    }

    public func setQueueAttributes(url: String, attributes: [String: String]) async throws(AWSError) {
        _ = try await call("SetQueueAttributes", ["QueueUrl": url, "Attributes": attributes])
    }

    /// Sends one message with string attributes (and `AWSTraceHeader` as a system attribute).
    @discardableResult
    public func sendMessage(
        url: String, body: String, attributes: [String: String], traceHeader: String? = nil, delaySeconds: Int = 0
    ) async throws(AWSError) -> String {
        var payload: [String: Any] = ["QueueUrl": url, "MessageBody": body]
        if delaySeconds > 0 { payload["DelaySeconds"] = delaySeconds }
        if !attributes.isEmpty { payload["MessageAttributes"] = Self.encode(attributes) }
        if let traceHeader { payload["MessageSystemAttributes"] = Self.systemAttributes(traceHeader: traceHeader) }
        let response = try await call("SendMessage", payload)
        return response["MessageId"] as? String ?? ""
    }

    /// Sends up to 10 messages (each with string attributes and, when given, `AWSTraceHeader`);
    /// returns the ids of the entries that failed.
    public func sendMessageBatch(
        url: String, entries: [(id: String, body: String, attributes: [String: String], traceHeader: String?)]
    ) async throws(AWSError) -> [String] {
        let list: [[String: Any]] = entries.map { entry in
            var item: [String: Any] = ["Id": entry.id, "MessageBody": entry.body]
            if !entry.attributes.isEmpty { item["MessageAttributes"] = Self.encode(entry.attributes) }
            if let traceHeader = entry.traceHeader { item["MessageSystemAttributes"] = Self.systemAttributes(traceHeader: traceHeader) }
            return item
        }
        let response = try await call("SendMessageBatch", ["QueueUrl": url, "Entries": list])
        return (response["Failed"] as? [[String: Any]] ?? []).compactMap { $0["Id"] as? String }
    }

    /// Long-polls for up to `maxMessages` (1…10), waiting up to `waitSeconds` (0…20).
    public func receiveMessage(url: String, maxMessages: Int, waitSeconds: Int, visibilityTimeout: Int?) async throws(AWSError)
        -> [SQSMessage]
    {
        var payload: [String: Any] = [
            "QueueUrl": url, "MaxNumberOfMessages": max(1, min(10, maxMessages)), "WaitTimeSeconds": max(0, min(20, waitSeconds)),
            "MessageAttributeNames": ["All"], "AttributeNames": ["All"], "MessageSystemAttributeNames": ["All"],
        ]
        if let visibilityTimeout { payload["VisibilityTimeout"] = visibilityTimeout }
        let response = try await call("ReceiveMessage", payload, timeout: Int64(waitSeconds) + 30)
        return (response["Messages"] as? [[String: Any]] ?? []).map { message in
            var attributes: [String: String] = [:]
            for (name, value) in message["MessageAttributes"] as? [String: [String: Any]] ?? [:] {
                if let text = value["StringValue"] as? String { attributes[name] = text }
            }
            return SQSMessage(
                messageID: message["MessageId"] as? String ?? "", receiptHandle: message["ReceiptHandle"] as? String ?? "",
                body: message["Body"] as? String ?? "", attributes: attributes,
                systemAttributes: message["Attributes"] as? [String: String] ?? [:])
        }
    }

    public func deleteMessage(url: String, receiptHandle: String) async throws(AWSError) {
        _ = try await call("DeleteMessage", ["QueueUrl": url, "ReceiptHandle": receiptHandle])
    }

    /// Deletes up to 10 messages; returns the ids of the entries that failed.
    public func deleteMessageBatch(url: String, entries: [(id: String, receiptHandle: String)]) async throws(AWSError) -> [String] {
        let list = entries.map { ["Id": $0.id, "ReceiptHandle": $0.receiptHandle] }
        let response = try await call("DeleteMessageBatch", ["QueueUrl": url, "Entries": list])
        return (response["Failed"] as? [[String: Any]] ?? []).compactMap { $0["Id"] as? String }
    }

    public func changeMessageVisibility(url: String, receiptHandle: String, timeout: Int) async throws(AWSError) {
        _ = try await call(
            "ChangeMessageVisibility", ["QueueUrl": url, "ReceiptHandle": receiptHandle, "VisibilityTimeout": max(0, min(43_200, timeout))])
    }

    /// The `AWSTraceHeader` system attribute X-Ray follows through SQS.
    static func systemAttributes(traceHeader: String) -> [String: Any] {
        ["AWSTraceHeader": ["DataType": "String", "StringValue": traceHeader]]
    }

    static func encode(_ attributes: [String: String]) -> [String: Any] {
        attributes.mapValues { ["DataType": "String", "StringValue": $0] }
    }

    private func invalid(_ operation: String) -> AWSError {
        AWSError(code: "InvalidResponse", message: "\(operation) answered without the expected fields")
    }
}
