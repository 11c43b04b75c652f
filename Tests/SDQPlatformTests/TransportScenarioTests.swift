import AsyncHTTPClient
import Foundation
import SDQPlatform
import SDQTestSupport
import Testing

/// The same scenarios over every available transport: the embedded store and, with an AWS
/// emulator (moto), SQS/SNS/S3/DynamoDB over their real wire protocols.
@Suite struct TransportScenarioTests {
    @Test func awsScenariosRunWhereRequired() {
        // CI sets SDQ_REQUIRE_AWS_TESTS so a missing emulator fails instead of silently shrinking the suite.
        if ProcessInfo.processInfo.environment["SDQ_REQUIRE_AWS_TESTS"] != nil {
            #expect(AWSTestEnvironment.available, "no AWS emulator: set SDQ_TEST_AWS_ENDPOINT or install moto_server")
        }
    }

    static func pools(maxReceiveCount: Int = 2) throws -> PoolConfiguration {
        try fastPools(maxReceiveCount: maxReceiveCount, visibilitySeconds: 1)
    }

    @Test(arguments: TransportKind.available)
    func visibilityHidesThenRedelivers(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind, pools: Self.pools())
        let queue = fixture.queue(fixture.names.poolQueue("default"))
        try await queue.send(body: "hello", attributes: ["sdq-task-id": "t1", "traceparent": "00-abc-def-01"])
        let first = try await queue.receive(maxMessages: 1, wait: .seconds(1), visibilityTimeout: .seconds(3))
        #expect(first.map(\.body) == ["hello"])
        #expect(first.first?.attributes["sdq-task-id"] == "t1")
        #expect(first.first?.attributes["traceparent"] == "00-abc-def-01")
        #expect(first.first?.receiveCount == 1)
        #expect(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).isEmpty)
        try await Task.sleep(for: .milliseconds(3500))
        let again = try await queue.receive(maxMessages: 1, wait: .seconds(2), visibilityTimeout: .seconds(30))
        #expect(again.first?.receiveCount == 2)
        try await queue.delete(receiptHandle: again[0].receiptHandle)
        #expect(await eventually(timeout: .seconds(5)) { try await queue.depth() == QueueDepth(visible: 0, inFlight: 0) })
    }

    @Test(arguments: TransportKind.available)
    func poisonMessagesAreRedrivenToTheDeadLetterQueue(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind, pools: Self.pools(maxReceiveCount: 2))
        let name = fixture.names.poolQueue("default")
        let queue = fixture.queue(name)
        let dlq = fixture.queue(fixture.names.deadLetterQueue(of: name))
        try await queue.send(body: "poison", attributes: ["sdq-task-id": "t2"])
        for _ in 0..<2 {
            let received = try await queue.receive(maxMessages: 1, wait: .seconds(2), visibilityTimeout: .seconds(30))
            #expect(received.count == 1)
            if let message = received.first { try await queue.changeVisibility(receiptHandle: message.receiptHandle, timeout: .zero) }
        }
        #expect(try await queue.receive(maxMessages: 1, wait: .seconds(1), visibilityTimeout: nil).isEmpty)
        let dead = try await dlq.receive(maxMessages: 1, wait: .seconds(2), visibilityTimeout: nil)
        #expect(dead.map(\.body) == ["poison"])
        #expect(dead.first?.attributes["sdq-task-id"] == "t2")
    }

    @Test(arguments: TransportKind.available)
    func topicsFanOutThroughFilterPolicies(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind, pools: Self.pools())
        let names = fixture.names
        try await fixture.transport.provision(Topology(
            queues: [QueueSpec(name: names.poolQueue("default"), visibilityTimeout: .seconds(30), maxReceiveCount: 2, deadLetterQueue: names.deadLetterQueue(of: names.poolQueue("default")))],
            topics: [names.tasksTopic],
            subscriptions: [SubscriptionSpec(
                topic: names.tasksTopic, queue: names.poolQueue("default"),
                filterPolicy: FilterPolicy(["sdq-priority": [.equals("high")]]))]))
        let topic = fixture.transport.topic(named: names.tasksTopic)
        try await topic.publish(body: "urgent", attributes: ["sdq-priority": "high", "sdq-task-id": "a"])
        try await topic.publish(body: "routine", attributes: ["sdq-priority": "normal", "sdq-task-id": "b"])
        let dispatch = Accumulator<QueueMessage>()
        let filtered = Accumulator<QueueMessage>()
        _ = await eventually(timeout: .seconds(10)) {
            await dispatch.append(try await fixture.queue(names.dispatchQueue).receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)))
            await filtered.append(try await fixture.queue(names.poolQueue("default")).receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)))
            let dispatched = await dispatch.count
            let matched = await filtered.count
            return dispatched == 2 && matched == 1
        }
        #expect(await dispatch.items.map(\.body).sorted() == ["routine", "urgent"])
        #expect(await filtered.items.map(\.body) == ["urgent"])
        #expect(await filtered.items.first?.attributes["sdq-task-id"] == "a", "raw delivery keeps message attributes")
    }

    @Test(arguments: TransportKind.available)
    func conditionalTransitionsHaveOneWinner(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let record = makeRecord(status: .running)
        #expect(try await store.create(record) == .created(record))
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<6 {
                group.addTask {
                    let outcome = try await store.update(id: record.id, ifStatusIn: TaskStatus.nonTerminal) {
                        $0.status = index.isMultiple(of: 2) ? .succeeded : .failed
                        $0.worker = "w\(index)"
                    }
                    if case .applied = outcome { return true }
                    return false
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(wins == 1)
        let final = try #require(try await store.get(id: record.id))
        #expect(final.status.isTerminal)
        #expect(try await store.update(id: record.id, ifStatusIn: TaskStatus.nonTerminal) { $0.status = .cancelled } == .conflict(final))
        #expect(try await store.update(id: "missing", ifStatusIn: [.queued]) { _ in } == .notFound)
    }

    @Test(arguments: TransportKind.available)
    func idempotencyKeysMapToOneTask(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        var first = makeRecord()
        first.idempotencyKey = "key-\(UUID().uuidString)"
        var second = makeRecord()
        second.idempotencyKey = first.idempotencyKey
        #expect(try await store.create(first) == .created(first))
        #expect(try await store.create(second) == .existing(first))
        #expect(try await store.get(id: second.id) == nil)
        var expired = makeRecord()
        expired.expiresAt = EpochClock.nowMillis() - 1000
        _ = try await store.create(expired)
        #expect(try await store.get(id: expired.id) == nil, "expired records are hidden before TTL removes them")
    }

    @Test(arguments: TransportKind.available)
    func objectsRoundTrip(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let objects = fixture.transport.objects
        let key = "outputs/t/image 0+1.png"
        let bytes = Data((0..<2000).map { UInt8($0 % 251) })
        try await objects.put(key: key, data: bytes, contentType: "image/png")
        #expect(try await objects.get(key: key) == StoredObject(key: key, data: bytes, contentType: "image/png"))
        #expect(try await objects.exists(key: key))
        if kind == .aws {
            let url = try #require(try await objects.presignedGetURL(key: key, expiresIn: .seconds(300)))
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            #expect(response.status.code == 200)
            #expect(Data(try await response.body.collect(upTo: 1 << 20).readableBytesView) == bytes)
        }
        try await objects.delete(key: key)
        #expect(try await objects.get(key: key) == nil)
        #expect(!(try await objects.exists(key: key)))
    }
}
