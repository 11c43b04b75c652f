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

    private func call(_ operation: String, _ payload: JSONValue, timeout: Int64? = nil) async throws(AWSError) -> JSONValue {
        try await client.json(service: "sqs", target: "AmazonSQS.\(operation)", payload, timeout: timeout.map { .seconds($0) })
    }

    /// Creates a queue (or returns the URL of an existing one with the same attributes).
    public func createQueue(name: String, attributes: [String: String]) async throws(AWSError) -> String {
        let response = try await call("CreateQueue", ["QueueName": .string(name), "Attributes": .strings(attributes)])
        guard let url = response["QueueUrl"]?.stringValue else { throw invalid("CreateQueue") }
        return url
    }

    public func getQueueURL(name: String) async throws(AWSError) -> String {
        let response = try await call("GetQueueUrl", ["QueueName": .string(name)])
        guard let url = response["QueueUrl"]?.stringValue else { throw invalid("GetQueueUrl") }
        return url
    }

    public func getQueueAttributes(url: String, names: [String] = ["All"]) async throws(AWSError) -> [String: String] {
        let response = try await call("GetQueueAttributes", ["QueueUrl": .string(url), "AttributeNames": .strings(names)])
        return response["Attributes"]?.stringMap ?? [:]
    }

    public func setQueueAttributes(url: String, attributes: [String: String]) async throws(AWSError) {
        _ = try await call("SetQueueAttributes", ["QueueUrl": .string(url), "Attributes": .strings(attributes)])
    }

    /// Sends one message with string attributes (and `AWSTraceHeader` as a system attribute).
    @discardableResult
    public func sendMessage(
        url: String, body: String, attributes: [String: String], traceHeader: String? = nil, delaySeconds: Int = 0
    ) async throws(AWSError) -> String {
        var payload: [String: JSONValue] = ["QueueUrl": .string(url), "MessageBody": .string(body)]
        if delaySeconds > 0 { payload["DelaySeconds"] = .int(delaySeconds) }
        if !attributes.isEmpty { payload["MessageAttributes"] = Self.encode(attributes) }
        if let traceHeader { payload["MessageSystemAttributes"] = Self.systemAttributes(traceHeader: traceHeader) }
        let response = try await call("SendMessage", .object(payload))
        return response["MessageId"]?.stringValue ?? ""
    }

    /// Sends up to 10 messages (each with string attributes and, when given, `AWSTraceHeader`);
    /// returns the ids of the entries that failed.
    public func sendMessageBatch(
        url: String, entries: [(id: String, body: String, attributes: [String: String], traceHeader: String?)]
    ) async throws(AWSError) -> [String] {
        let list: [JSONValue] = entries.map { entry in
            var item: [String: JSONValue] = ["Id": .string(entry.id), "MessageBody": .string(entry.body)]
            if !entry.attributes.isEmpty { item["MessageAttributes"] = Self.encode(entry.attributes) }
            if let traceHeader = entry.traceHeader { item["MessageSystemAttributes"] = Self.systemAttributes(traceHeader: traceHeader) }
            return .object(item)
        }
        let response = try await call("SendMessageBatch", ["QueueUrl": .string(url), "Entries": .array(list)])
        return Self.failedIDs(response)
    }

    /// Long-polls for up to `maxMessages` (1…10), waiting up to `waitSeconds` (0…20).
    public func receiveMessage(url: String, maxMessages: Int, waitSeconds: Int, visibilityTimeout: Int?) async throws(AWSError)
        -> [SQSMessage]
    {
        var payload: [String: JSONValue] = [
            "QueueUrl": .string(url), "MaxNumberOfMessages": .int(max(1, min(10, maxMessages))),
            "WaitTimeSeconds": .int(max(0, min(20, waitSeconds))),
            "MessageAttributeNames": ["All"], "AttributeNames": ["All"], "MessageSystemAttributeNames": ["All"],
        ]
        if let visibilityTimeout { payload["VisibilityTimeout"] = .int(visibilityTimeout) }
        let response = try await call("ReceiveMessage", .object(payload), timeout: Int64(waitSeconds) + 30)
        return (response["Messages"]?.arrayValue ?? []).map { message in
            var attributes: [String: String] = [:]
            for (name, value) in message["MessageAttributes"]?.objectValue ?? [:] {
                if let text = value["StringValue"]?.stringValue { attributes[name] = text }
            }
            return SQSMessage(
                messageID: message["MessageId"]?.stringValue ?? "", receiptHandle: message["ReceiptHandle"]?.stringValue ?? "",
                body: message["Body"]?.stringValue ?? "", attributes: attributes,
                systemAttributes: message["Attributes"]?.stringMap ?? [:])
        }
    }

    public func deleteMessage(url: String, receiptHandle: String) async throws(AWSError) {
        _ = try await call("DeleteMessage", ["QueueUrl": .string(url), "ReceiptHandle": .string(receiptHandle)])
    }

    /// Deletes up to 10 messages; returns the ids of the entries that failed.
    public func deleteMessageBatch(url: String, entries: [(id: String, receiptHandle: String)]) async throws(AWSError) -> [String] {
        let list: [JSONValue] = entries.map { ["Id": .string($0.id), "ReceiptHandle": .string($0.receiptHandle)] }
        let response = try await call("DeleteMessageBatch", ["QueueUrl": .string(url), "Entries": .array(list)])
        return Self.failedIDs(response)
    }

    public func changeMessageVisibility(url: String, receiptHandle: String, timeout: Int) async throws(AWSError) {
        _ = try await call(
            "ChangeMessageVisibility",
            ["QueueUrl": .string(url), "ReceiptHandle": .string(receiptHandle), "VisibilityTimeout": .int(max(0, min(43_200, timeout)))])
    }

    /// The `AWSTraceHeader` system attribute X-Ray follows through SQS.
    static func systemAttributes(traceHeader: String) -> JSONValue {
        ["AWSTraceHeader": ["DataType": "String", "StringValue": .string(traceHeader)]]
    }

    static func encode(_ attributes: [String: String]) -> JSONValue {
        .object(attributes.mapValues { ["DataType": "String", "StringValue": .string($0)] })
    }

    /// The ids of a batch call's failed entries.
    static func failedIDs(_ response: JSONValue) -> [String] {
        (response["Failed"]?.arrayValue ?? []).compactMap { $0["Id"]?.stringValue }
    }

    private func invalid(_ operation: String) -> AWSError {
        AWSError(code: "InvalidResponse", message: "\(operation) answered without the expected fields")
    }
}
