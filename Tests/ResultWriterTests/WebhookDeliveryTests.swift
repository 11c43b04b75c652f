import Foundation
import ResultWriter
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Webhook delivery against a receiver that verifies signatures independently (Python's hmac):
/// success, failures then success, permanent failure, a slow receiver, long delays, refusals.
@Suite struct WebhookDeliveryTests {
    static let secret = "whsec_" + Data((0..<24).map { UInt8($0 * 7 % 256) }).base64EncodedString()

    struct Harness {
        let fixture: EmbeddedFixture
        let writer: ResultWriter
        var context: StackContext { fixture.context }
        var webhooks: any MessageQueue { fixture.queue(fixture.context.names.webhooksQueue) }

        static func make(delays: [Int] = [0, 0, 0], timeout: Double = 5, allowPrivate: Bool = true) async throws -> Harness {
            var pools = try fastPools()
            pools.webhooks.retryDelaysSeconds = delays
            pools.webhooks.timeoutSeconds = timeout
            let fixture = try await EmbeddedFixture.make(pools: pools)
            let writer = ResultWriter(
                context: fixture.context, logger: testLogger(), webhookPolicy: OutboundURLPolicy(allowPrivate: allowPrivate))
            return Harness(fixture: fixture, writer: writer)
        }

        /// A running task with a callback, finished by a success result (which queues `completed`).
        func finishedTask(callback url: String, secret: String? = WebhookDeliveryTests.secret) async throws -> String {
            var record = makeRecord(status: .running)
            record.callback = CallbackSpec(url: url, secret: secret)
            record.webhook = WebhookState()
            _ = try await fixture.transport.tasks.create(record)
            let message = AnnouncementTests.message(ResultWriterTests.success(record.id))
            #expect(await writer.handle(message) == .delete)
            return record.id
        }

        /// Delivers what the webhooks queue holds until it is empty (retries with no delay included).
        @discardableResult
        func deliverAll(maxRounds: Int = 20) async throws -> Int {
            var handled = 0
            for _ in 0..<maxRounds {
                let batch = try await webhooks.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
                if batch.isEmpty { return handled }
                for message in batch {
                    let disposition = await writer.deliverer.deliver(message)
                    #expect(disposition == .delete)
                    try await webhooks.delete(receiptHandle: message.receiptHandle)
                    handled += 1
                }
            }
            return handled
        }

        func record(_ id: String) async throws -> TaskRecord { try #require(try await fixture.transport.tasks.get(id: id)) }
    }

    @Test func aCompletedEventIsSignedAndVerifiesWithTheTasksSecret() async throws {
        let harness = try await Harness.make()
        try await withWebhookReceiver(secret: Self.secret) { receiver in
            let id = try await harness.finishedTask(callback: receiver.url)
            #expect(try await harness.deliverAll() == 1)
            let deliveries = receiver.deliveries()
            #expect(deliveries.count == 1)
            let delivery = try #require(deliveries.first)
            #expect(delivery.verified)
            #expect(delivery.id == "msg_\(id)_completed")
            #expect(delivery.type == "task.completed" && delivery.taskStatus == "succeeded")
            #expect(delivery.body?["data"]?["id"]?.stringValue == id)
            #expect(delivery.body?["data"]?["status_url"]?.stringValue == "/v1/tasks/\(id)")
            #expect(delivery.path == "/hooks/sdq")
            let record = try await harness.record(id)
            #expect(record.webhook?.status == .succeeded)
            #expect(record.webhook?.attempts.map(\.statusCode) == [200])
            #expect(record.status == .succeeded)
        }
    }

    @Test func failuresAreRetriedWithTheSameIdUntilOneSucceeds() async throws {
        let harness = try await Harness.make(delays: [0, 0, 0, 0])
        try await withWebhookReceiver(secret: Self.secret, responses: [500, 503, 200]) { receiver in
            let id = try await harness.finishedTask(callback: receiver.url)
            #expect(try await harness.deliverAll() == 3)
            let deliveries = receiver.deliveries()
            #expect(deliveries.map(\.status) == [500, 503, 200])
            #expect(Set(deliveries.compactMap(\.id)) == ["msg_\(id)_completed"])
            #expect(deliveries.allSatisfy { $0.verified })
            let record = try await harness.record(id)
            #expect(record.webhook?.status == .succeeded)
            #expect(record.webhook?.attempts.map(\.attempt) == [1, 2, 3])
            #expect(record.webhook?.attempts.map(\.statusCode) == [500, 503, 200])
        }
    }

    @Test func afterTheLastAttemptTheDeliveryFailsAndTheTaskStaysSucceeded() async throws {
        let harness = try await Harness.make(delays: [0, 0])
        try await withWebhookReceiver(secret: Self.secret, responses: [500]) { receiver in
            let id = try await harness.finishedTask(callback: receiver.url)
            #expect(try await harness.deliverAll() == 3)
            #expect(receiver.deliveries().count == 3)
            let record = try await harness.record(id)
            #expect(record.webhook?.status == .failed)
            #expect(record.webhook?.attempts.count == 3)
            #expect(record.status == .succeeded)
            #expect(try await harness.webhooks.depth() == QueueDepth(visible: 0, inFlight: 0))
        }
    }

    @Test func aSlowReceiverTimesOutAndIsRetried() async throws {
        let harness = try await Harness.make(delays: [0], timeout: 0.5)
        try await withWebhookReceiver(secret: Self.secret, delayMilliseconds: 2_000) { receiver in
            let id = try await harness.finishedTask(callback: receiver.url)
            #expect(try await harness.deliverAll() == 2)
            let record = try await harness.record(id)
            #expect(record.webhook?.status == .failed)
            #expect(record.webhook?.attempts.map(\.error) == ["timed out", "timed out"])
            #expect(record.webhook?.attempts.allSatisfy { $0.statusCode == nil && $0.durationMs < 1_900 } == true)
        }
    }

    @Test func aWaitLongerThanTheQueueDelayHopsThroughTheQueue() async throws {
        let harness = try await Harness.make(delays: [3600])
        try await withWebhookReceiver(secret: Self.secret, responses: [500]) { receiver in
            let id = try await harness.finishedTask(callback: receiver.url)
            #expect(try await harness.deliverAll() == 1)
            #expect(receiver.deliveries().count == 1)
            // The retry waits in the queue (not visible), marked not before an hour from now.
            #expect(try await harness.webhooks.depth() == QueueDepth(visible: 0, inFlight: 1))
            #expect(try await harness.record(id).webhook?.status == .pending)
            // An event that arrives before its time is sent around again, not delivered.
            var early = Sdq_V1_WebhookEvent()
            early.taskID = id
            early.event = "completed"
            early.attempt = 2
            early.notBeforeMs = EpochClock.nowMillis() + 3_600_000
            let encoded = MessageCodec.encode(early, attributes: [MessageAttribute.taskID: id])
            let message = QueueMessage(messageID: "m", body: encoded.body, attributes: encoded.attributes, receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
            #expect(await harness.writer.deliverer.deliver(message) == .delete)
            #expect(receiver.deliveries().count == 1)
            #expect(try await harness.webhooks.depth() == QueueDepth(visible: 0, inFlight: 2))
        }
    }

    /// Delivery re-checks the destination: a loopback callback is refused when private addresses
    /// are not allowed, without retries, and nothing reaches it.
    @Test func aPrivateDestinationIsRefusedAtDelivery() async throws {
        let harness = try await Harness.make(allowPrivate: false)
        try await withWebhookReceiver(secret: Self.secret) { receiver in
            let id = try await harness.finishedTask(callback: receiver.url)
            #expect(try await harness.deliverAll() == 1)
            #expect(receiver.deliveries().isEmpty)
            let record = try await harness.record(id)
            #expect(record.webhook?.status == .failed)
            #expect(record.webhook?.attempts.count == 1)
            #expect(record.webhook?.attempts.first?.error?.hasPrefix("refused:") == true)
        }
    }

    @Test func runningAndProgressEventsOfAnEndedTaskAreDropped() async throws {
        let harness = try await Harness.make()
        try await withWebhookReceiver(secret: Self.secret) { receiver in
            var record = makeRecord(status: .running)
            record.callback = CallbackSpec(url: receiver.url, secret: Self.secret, events: ["running", "progress", "completed"])
            _ = try await harness.fixture.transport.tasks.create(record)
            try await WebhookEvents.enqueue(event: "running", taskID: record.id, data: .object(["id": .string(record.id)]), context: harness.context)
            #expect(try await harness.deliverAll() == 1)
            #expect(receiver.deliveries().map(\.type) == ["task.running"])
            #expect(receiver.deliveries().allSatisfy { $0.verified })
            _ = try await harness.fixture.transport.tasks.update(id: record.id, ifStatusIn: [.running]) { $0.status = .cancelled }
            try await WebhookEvents.enqueue(
                event: "progress", taskID: record.id, data: .object(["progress": .number(0.5)]), step: 50, context: harness.context)
            #expect(try await harness.deliverAll() == 1)
            #expect(receiver.deliveries().count == 1)
        }
    }
}
