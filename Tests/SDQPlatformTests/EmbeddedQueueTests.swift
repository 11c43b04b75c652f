import Foundation
import SDQPlatform
import SDQTestSupport
import Testing
import SDQStack

@Suite struct EmbeddedQueueTests {
    /// The clock of the queues' visibility: the tests move it instead of sleeping.
    let epoch = ManualClock()

    private func queueFixture(visibility: Duration = .seconds(30), maxReceives: Int = 3) async throws
        -> (EmbeddedFixture, any MessageQueue, any MessageQueue)
    {
        let fixture = try await EmbeddedFixture.make(time: epoch.time)
        try await fixture.transport.provision(
            Topology(
                queues: [
                    QueueSpec(name: "q", visibilityTimeout: visibility, maxReceiveCount: maxReceives, deadLetterQueue: "q-dlq"),
                    QueueSpec(name: "q-dlq", visibilityTimeout: .seconds(30), maxReceiveCount: 0, deadLetterQueue: nil),
                ], topics: [], subscriptions: []))
        return (fixture, fixture.queue("q"), fixture.queue("q-dlq"))
    }

    @Test func sendReceiveDeleteKeepsBodyAndAttributes() async throws {
        let (_, queue, _) = try await queueFixture()
        try await queue.send(body: "aGVsbG8=", attributes: ["sdq-task-id": "t1", "traceparent": "00-abc"])
        let messages = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        #expect(messages.count == 1)
        #expect(messages[0].body == "aGVsbG8=")
        #expect(messages[0].attributes == ["sdq-task-id": "t1", "traceparent": "00-abc"])
        #expect(messages[0].receiveCount == 1)
        try await queue.delete(receiptHandle: messages[0].receiptHandle)
        #expect(try await queue.depth() == QueueDepth(visible: 0, inFlight: 0))
    }

    @Test func receivedMessagesStayInvisibleUntilTheTimeoutThenReturn() async throws {
        let (_, queue, _) = try await queueFixture()
        try await queue.send(body: "m", attributes: [:])
        let first = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(2))
        #expect(first.count == 1)
        epoch.advance(by: .milliseconds(1999))
        #expect(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).isEmpty)
        #expect(try await queue.depth() == QueueDepth(visible: 0, inFlight: 1))
        epoch.advance(by: .milliseconds(1))
        let again = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil)
        try #require(again.count == 1)
        #expect(again[0].receiveCount == 2)
        #expect(again[0].messageID == first[0].messageID)
        #expect(again[0].receiptHandle != first[0].receiptHandle)
    }

    @Test func aStaleReceiptCannotDeleteOrExtendARedeliveredMessage() async throws {
        let (_, queue, _) = try await queueFixture()
        try await queue.send(body: "m", attributes: [:])
        let first = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(100))
        epoch.advance(by: .milliseconds(100))
        let second = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil)
        #expect(second.count == 1)
        try await queue.delete(receiptHandle: first[0].receiptHandle)
        await #expect(throws: TransportError.receiptExpired()) {
            try await queue.changeVisibility(receiptHandle: first[0].receiptHandle, timeout: .seconds(5))
        }
        #expect(try await queue.depth().inFlight == 1)
        try await queue.delete(receiptHandle: second[0].receiptHandle)
        #expect(try await queue.depth() == QueueDepth(visible: 0, inFlight: 0))
    }

    @Test func aMessageWhoseVisibilityLapsedCannotBeExtended() async throws {
        let (_, queue, _) = try await queueFixture()
        try await queue.send(body: "m", attributes: [:])
        let first = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(100))
        epoch.advance(by: .milliseconds(100))
        await #expect(throws: TransportError.receiptExpired()) {
            try await queue.changeVisibility(receiptHandle: first[0].receiptHandle, timeout: .seconds(30))
        }
        #expect(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).count == 1)
    }

    @Test func changeVisibilityExtendsAndZeroReleasesAtOnce() async throws {
        let (_, queue, _) = try await queueFixture()
        try await queue.send(body: "m", attributes: [:])
        let first = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(2))
        epoch.advance(by: .milliseconds(1999))
        try await queue.changeVisibility(receiptHandle: first[0].receiptHandle, timeout: .seconds(30))
        epoch.advance(by: .seconds(29))
        #expect(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).isEmpty)
        try await queue.changeVisibility(receiptHandle: first[0].receiptHandle, timeout: .zero)
        #expect(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).count == 1)
    }

    @Test func redrivesToTheDeadLetterQueueAfterMaxReceives() async throws {
        let (_, queue, dlq) = try await queueFixture(maxReceives: 2)
        try await queue.send(body: "poison", attributes: ["sdq-task-id": "t9"])
        for expected in 1...2 {
            let messages = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30))
            #expect(messages.first?.receiveCount == expected)
            try await queue.changeVisibility(receiptHandle: messages[0].receiptHandle, timeout: .zero)
        }
        #expect(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).isEmpty)
        let dead = try await dlq.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil)
        #expect(dead.count == 1)
        #expect(dead[0].body == "poison")
        #expect(dead[0].attributes["sdq-task-id"] == "t9")
        #expect(dead[0].receiveCount == 1)
    }

    @Test func messagesSurviveARestart() async throws {
        let directory = TemporaryDirectory()
        let names = ResourceNames(stack: "test")
        let epoch = ManualClock()
        let first = try await EmbeddedFixture.make(directory: directory, time: epoch.time)
        try await first.queue(names.dispatchQueue).send(body: "durable", attributes: ["a": "b"])
        let inFlight = try await first.queue(names.dispatchQueue).receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(300))
        #expect(inFlight.count == 1)
        _ = try await first.transport.tasks.create(makeRecord(id: "durable-task"))
        await first.transport.close()

        let reopened = try await EmbeddedFixture.make(directory: directory, time: epoch.time)
        #expect(try await reopened.transport.tasks.get(id: "durable-task")?.status == .queued)
        #expect(try await reopened.queue(names.dispatchQueue).receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).isEmpty)
        epoch.advance(by: .milliseconds(300))
        let again = try await reopened.queue(names.dispatchQueue).receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil)
        #expect(again.map(\.body) == ["durable"])
        #expect(again.first?.receiveCount == 2)
        #expect(again.first?.attributes == ["a": "b"])
    }

    @Test func aLongPollWakesWhenAMessageArrives() async throws {
        let fixture = try await EmbeddedFixture.make(pollInterval: .seconds(30))
        let queue = fixture.queue(fixture.context.names.dispatchQueue)
        let started = ContinuousClock.now
        async let received = queue.receive(maxMessages: 1, wait: .seconds(20), visibilityTimeout: nil)
        try await Task.sleep(for: .milliseconds(200))
        try await queue.send(body: "wake", attributes: [:])
        let messages = try await received
        #expect(messages.map(\.body) == ["wake"])
        // The cross-process poll is 30 s and the wait 20 s: only the in-process signal explains an early return.
        #expect(started.duration(to: .now) < .seconds(10))
    }

    @Test func anEmptyLongPollReturnsAfterItsWait() async throws {
        let (_, queue, _) = try await queueFixture()
        let started = ContinuousClock.now
        let messages = try await queue.receive(maxMessages: 1, wait: .milliseconds(300), visibilityTimeout: nil)
        #expect(messages.isEmpty)
        #expect(started.duration(to: .now) >= .milliseconds(300))
    }

    @Test func sendingToAnUnknownQueueFails() async throws {
        let fixture = try await EmbeddedFixture.make()
        await #expect(throws: TransportError.notFound("queue nope")) {
            try await fixture.queue("nope").send(body: "x", attributes: [:])
        }
    }

    @Test func concurrentReceiversNeverGetTheSameMessage() async throws {
        let (_, queue, _) = try await queueFixture()
        for index in 0..<40 { try await queue.send(body: "m\(index)", attributes: [:]) }
        let bodies = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var mine: [String] = []
                    while true {
                        let batch = try await queue.receive(maxMessages: 3, wait: .zero, visibilityTimeout: .seconds(30))
                        if batch.isEmpty { return mine }
                        mine += batch.map(\.body)
                    }
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(bodies.count == 40)
        #expect(Set(bodies).count == 40)
    }
}
