import Foundation
import ResultWriter
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// One terminal state, one manifest, one notification and one `completed` webhook event per task,
/// whatever the duplicates and races; over both transports.
@Suite struct AnnouncementTests {
    static let probe = "probe-notifications"
    static let failedOnly = "probe-failed"

    /// A stack with two queues subscribed to the notifications topic: all, and failures only.
    static func stack(_ kind: TransportKind) async throws -> StackFixture {
        let fixture = try await StackFixture.make(kind, pools: try fastPools())
        let names = fixture.names
        let probe = "\(names.stack)-\(Self.probe)", failed = "\(names.stack)-\(Self.failedOnly)"
        try await fixture.transport.provision(Topology(
            queues: [
                QueueSpec(name: probe, visibilityTimeout: .seconds(30), maxReceiveCount: 0, deadLetterQueue: nil),
                QueueSpec(name: failed, visibilityTimeout: .seconds(30), maxReceiveCount: 0, deadLetterQueue: nil),
            ],
            topics: [names.notificationsTopic],
            subscriptions: [
                SubscriptionSpec(topic: names.notificationsTopic, queue: probe),
                SubscriptionSpec(
                    topic: names.notificationsTopic, queue: failed, filterPolicy: FilterPolicy(["status": [.equals("failed")]])),
            ]))
        return fixture
    }

    static func drainAll(_ queue: any MessageQueue) async throws -> [QueueMessage] {
        var all: [QueueMessage] = []
        while true {
            let batch = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
            if batch.isEmpty { return all }
            all += batch
        }
    }

    static func message(_ result: Sdq_V1_TaskResult, receipt: String = "r") -> QueueMessage {
        let encoded = MessageCodec.encode(result, attributes: [MessageAttribute.taskID: result.id])
        return QueueMessage(messageID: "m", body: encoded.body, attributes: encoded.attributes, receiptHandle: receipt, receiveCount: 1, sentAtMillis: 0)
    }

    @Test(arguments: TransportKind.available)
    func duplicatesAndConcurrentWritersAnnounceOnce(_ kind: TransportKind) async throws {
        let fixture = try await Self.stack(kind)
        var record = makeRecord(status: .running)
        record.callback = CallbackSpec(url: "https://hooks.example.com/sdq", secret: nil)
        record.webhook = WebhookState()
        _ = try await fixture.transport.tasks.create(record)
        let writers = (0..<3).map { _ in ResultWriter(context: fixture.context, logger: testLogger()) }
        let message = Self.message(ResultWriterTests.success(record.id))
        // Every writer gets the result twice, all at once; a writer told to retry gets it again,
        // as the queue would redeliver it.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in writers + writers {
                group.addTask {
                    for _ in 0..<100 {
                        if await writer.handle(message) == .delete { return }
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    Issue.record("a writer never finished")
                }
            }
            try await group.waitForAll()
        }
        let stored = try #require(try await fixture.transport.tasks.get(id: record.id))
        #expect(stored.status == .succeeded)
        #expect(stored.announcedAt != nil && stored.announceClaim == nil)
        #expect(try await fixture.transport.objects.exists(key: ResultWriter.manifestKey(for: record.id)))
        let notifications = try await Self.drainAll(fixture.queue("\(fixture.names.stack)-\(Self.probe)"))
        #expect(notifications.count == 1)
        let events = try await Self.drainAll(fixture.queue(fixture.names.webhooksQueue))
        #expect(events.count == 1)
        let event = try MessageCodec.decode(Sdq_V1_WebhookEvent.self, body: events[0].body, attributes: events[0].attributes)
        #expect(event.event == "completed" && event.taskID == record.id && event.webhookID == "msg_\(record.id)_completed")
        // A late duplicate changes nothing and announces nothing.
        #expect(await writers[0].handle(message) == .delete)
        #expect(try await Self.drainAll(fixture.queue("\(fixture.names.stack)-\(Self.probe)")).isEmpty)
    }

    @Test(arguments: TransportKind.available)
    func theNotificationCarriesTheReferenceFieldsAndFilterableAttributes(_ kind: TransportKind) async throws {
        let fixture = try await Self.stack(kind)
        var reference = makeRecord(status: .running)
        reference.idempotencyKey = "v1alpha2:ref-42"
        reference.context = #"{"user":"u1"}"#
        reference.tenant = "key-abc"
        let plain = makeRecord(status: .dispatched)
        _ = try await fixture.transport.tasks.create(reference)
        _ = try await fixture.transport.tasks.create(plain)
        let writer = ResultWriter(context: fixture.context, logger: testLogger())
        #expect(await writer.handle(Self.message(ResultWriterTests.success(reference.id))) == .delete)
        var failure = Sdq_V1_TaskResult()
        failure.id = plain.id
        failure.outcome = .failed
        failure.error.code = "runtime_error"
        #expect(await writer.handle(Self.message(failure)) == .delete)

        let all = try await Self.drainAll(fixture.queue("\(fixture.names.stack)-\(Self.probe)"))
        #expect(all.count == 2)
        let bodies = try all.map { try JSONValue.parse(Data($0.body.utf8)) }
        let bucket = fixture.transport.objects.bucket
        let succeeded = try #require(bodies.first { $0["task_id"]?.stringValue == reference.id })
        #expect(succeeded["id"]?.stringValue == "ref-42")
        #expect(succeeded["result"] == .bool(true))
        #expect(succeeded["status"]?.stringValue == "succeeded")
        #expect(succeeded["runtime"]?.stringValue == "default")
        #expect(succeeded["image_url"] == .array([.string("s3://\(bucket)/outputs/\(reference.id)/image-0.png")]))
        #expect(succeeded["output_url"]?.stringValue == "s3://\(bucket)/results/\(reference.id)/manifest.json")
        #expect(succeeded["context"]?["user"]?.stringValue == "u1")
        let failed = try #require(bodies.first { $0["task_id"]?.stringValue == plain.id })
        #expect(failed["id"]?.stringValue == plain.id && failed["result"] == .bool(false))
        #expect(failed["error"]?["code"]?.stringValue == "runtime_error")

        // The filtered subscription only sees the failure; attributes carry status, pool, tenant.
        let filtered = try await Self.drainAll(fixture.queue("\(fixture.names.stack)-\(Self.failedOnly)"))
        #expect(filtered.count == 1)
        #expect(try JSONValue.parse(Data(filtered[0].body.utf8))["task_id"]?.stringValue == plain.id)
        #expect(ResultWriter.notificationAttributes(reference) == [
            "status": "running", "pool": "default", "tenant": "key-abc", "content-type": "application/json",
        ])
    }

    @Test func theManifestCarriesTheRequestParametersAndSeeds() async throws {
        let fixture = try await StackFixture.make(.embedded)
        var record = makeRecord(status: .running)
        record.parameters = #"{"prompt":"a lighthouse","seed":1,"steps":20}"#
        _ = try await fixture.transport.tasks.create(record)
        let writer = ResultWriter(context: fixture.context, logger: testLogger())
        #expect(await writer.handle(Self.message(ResultWriterTests.success(record.id))) == .delete)
        let object = try #require(try await fixture.transport.objects.get(key: ResultWriter.manifestKey(for: record.id)))
        let manifest = try JSONValue.parse(object.data)
        #expect(manifest["parameters"]?["prompt"]?.stringValue == "a lighthouse")
        #expect(manifest["seeds"] == .array([.number(1)]))
        #expect(manifest["status"]?.stringValue == "succeeded")
        #expect(manifest["images"]?[0]?["url"]?.stringValue?.hasPrefix("s3://") == true)
    }

    @Test func theEmbeddedSweeperDeletesExpiredResultsOnly() async throws {
        let fixture = try await EmbeddedFixture.make()
        let objects = fixture.transport.objects
        for key in ["outputs/t1/image-0.png", "results/t1/manifest.json", "workers/default/loaded/m-x"] {
            try await objects.put(key: key, data: Data("x".utf8), contentType: "application/octet-stream")
        }
        // Nothing is old enough yet.
        #expect(try await fixture.transport.sweepExpired(objectTTL: .seconds(3600), prefixes: ["outputs/", "results/"]) == 0)
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await fixture.transport.sweepExpired(objectTTL: .milliseconds(10), prefixes: ["outputs/", "results/"]) == 2)
        #expect(try await objects.exists(key: "outputs/t1/image-0.png") == false)
        #expect(try await objects.exists(key: "results/t1/manifest.json") == false)
        #expect(try await objects.exists(key: "workers/default/loaded/m-x"))
    }
}
