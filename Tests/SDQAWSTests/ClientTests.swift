import AsyncHTTPClient
import Foundation
import NIOCore
import SDQAWS
import SDQTestSupport
import Testing

/// The clients' wider surface against the shared AWS emulator.
@Suite(.enabled(if: AWSTestEnvironment.available, "needs an AWS emulator (moto)"))
struct ClientTests {
    static func client() -> AWSHTTPClient {
        let environment = AWSEnvironment(AWSTestEnvironment.variables())
        return AWSHTTPClient(environment: environment, credentials: CredentialChain.standard(environment: environment))
    }

    @Test func sqsBatchesAttributesAndLongPolling() async throws {
        let sqs = SQSClient(client: Self.client())
        let url = try await sqs.createQueue(name: AWSTestEnvironment.uniqueStack(), attributes: ["VisibilityTimeout": "30"])
        let failed = try await sqs.sendMessageBatch(url: url, entries: (0..<3).map { ("m\($0)", "body \($0)", ["n": "\($0)"], nil) })
        #expect(failed.isEmpty)
        try await sqs.sendMessage(url: url, body: "traced", attributes: [:], traceHeader: "Root=1-5759e988-bd862e3fe1be46a994272793")
        var received: [SQSMessage] = []
        for _ in 0..<5 where received.count < 4 {
            received += try await sqs.receiveMessage(url: url, maxMessages: 10, waitSeconds: 1, visibilityTimeout: 30)
        }
        #expect(received.map(\.body).sorted() == ["body 0", "body 1", "body 2", "traced"])
        #expect(received.first { $0.body == "body 1" }?.attributes == ["n": "1"])
        #expect(received.allSatisfy { $0.systemAttributes["ApproximateReceiveCount"] == "1" && $0.systemAttributes["SentTimestamp"] != nil })
        #expect(received.first { $0.body == "traced" }?.systemAttributes["AWSTraceHeader"] == "Root=1-5759e988-bd862e3fe1be46a994272793")
        let undeleted = try await sqs.deleteMessageBatch(url: url, entries: received.enumerated().map { ("d\($0.offset)", $0.element.receiptHandle) })
        #expect(undeleted.isEmpty)
        let attributes = try await sqs.getQueueAttributes(url: url, names: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        #expect(attributes["ApproximateNumberOfMessages"] == "0" && attributes["ApproximateNumberOfMessagesNotVisible"] == "0")
        // An empty long poll waits (here 1 s) and answers no messages.
        let started = ContinuousClock.now
        #expect(try await sqs.receiveMessage(url: url, maxMessages: 1, waitSeconds: 1, visibilityTimeout: nil).isEmpty)
        #expect(started.duration(to: .now) >= .milliseconds(900))
    }

    @Test func s3PresignedPutThenGetAndMissingObjects() async throws {
        let s3 = S3Client(client: Self.client())
        let bucket = AWSTestEnvironment.uniqueStack()
        try await s3.createBucket(bucket)
        try await s3.createBucket(bucket)  // idempotent
        let put = try await s3.presignedURL(method: "PUT", bucket: bucket, key: "uploads/u1/init.png", expires: 300)
        var upload = HTTPClientRequest(url: put)
        upload.method = .PUT
        upload.body = .bytes(ByteBuffer(bytes: [7, 7, 7]))
        let uploaded = try await HTTPClient.aws.execute(upload, timeout: .seconds(10))
        _ = try await uploaded.body.collect(upTo: 1 << 20)
        #expect(uploaded.status.code == 200)
        #expect(try await s3.getObject(bucket: bucket, key: "uploads/u1/init.png")?.data == Data([7, 7, 7]))
        #expect(try await s3.getObject(bucket: bucket, key: "uploads/none") == nil)
        #expect(!(try await s3.headObject(bucket: bucket, key: "uploads/none")))
    }

    @Test func dynamoConditionsAndTTL() async throws {
        let dynamo = DynamoDBClient(client: Self.client())
        let table = AWSTestEnvironment.uniqueStack()
        try await dynamo.createTable(name: table, hashKey: "id")
        try await dynamo.createTable(name: table, hashKey: "id")  // idempotent
        try await dynamo.enableTimeToLive(table: table, attribute: "expires_at")
        try await dynamo.enableTimeToLive(table: table, attribute: "expires_at")  // idempotent
        try await dynamo.putItem(DynamoPut(table: table, item: ["id": .string("a"), "v": .int(1)], condition: "attribute_not_exists(id)"))
        do {
            try await dynamo.putItem(DynamoPut(table: table, item: ["id": .string("a"), "v": .int(2)], condition: "attribute_not_exists(id)"))
            Issue.record("the condition must fail")
        } catch {
            #expect(error.code == "ConditionalCheckFailedException")
            #expect(error.requestID != nil)
        }
        try await dynamo.putItem(DynamoPut(
            table: table, item: ["id": .string("a"), "v": .int(2)], condition: "#v = :v", names: ["#v": "v"], values: [":v": .int(1)]))
        #expect(try await dynamo.getItem(table: table, key: ["id": .string("a")])?["v"] == .number("2"))
        do {
            try await dynamo.transactPut([
                DynamoPut(table: table, item: ["id": .string("b")], condition: "attribute_not_exists(id)"),
                DynamoPut(table: table, item: ["id": .string("a")], condition: "attribute_not_exists(id)"),
            ])
            Issue.record("the transaction must be cancelled")
        } catch {
            #expect(error.code == "TransactionCanceledException")
        }
        #expect(try await dynamo.getItem(table: table, key: ["id": .string("b")]) == nil, "all or nothing")
    }
}
