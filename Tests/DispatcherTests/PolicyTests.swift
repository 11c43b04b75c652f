import Dispatcher
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Priority, deadlines, cancellation before dispatch and dead-letter reporting, over both transports.
@Suite struct PolicyTests {
    struct Harness {
        let fixture: StackFixture
        let dispatcher: Dispatcher
        var context: StackContext { fixture.context }

        static func make(_ kind: TransportKind) async throws -> Harness {
            let fixture = try await StackFixture.make(kind, pools: try fastPools())
            return Harness(fixture: fixture, dispatcher: Dispatcher(context: fixture.context, logger: testLogger()))
        }

        /// Records a queued task and routes its dispatch message.
        @discardableResult
        func submitAndRoute(priority: Sdq_V1_Priority = .normal, deadline: Int64 = 0, status: TaskStatus = .queued) async throws -> String {
            var task = Sdq_V1_GenerationTask()
            task.id = TaskID.generate()
            task.parameters.prompt = "x"
            task.priority = priority
            task.deadlineMs = deadline
            _ = try await fixture.transport.tasks.create(makeRecord(id: task.id, status: status))
            let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
            let message = QueueMessage(
                messageID: "m", body: encoded.body, attributes: encoded.attributes, receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
            #expect(await dispatcher.route(message) == .delete)
            return task.id
        }

        func results() async throws -> [Sdq_V1_TaskResult] {
            try await fixture.queue(context.names.resultsQueue).receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
                .map { try MessageCodec.decode(Sdq_V1_TaskResult.self, body: $0.body, attributes: $0.attributes) }
        }
    }

    @Test(arguments: TransportKind.available)
    func highPriorityTasksAreTakenFirst(_ kind: TransportKind) async throws {
        let harness = try await Harness.make(kind)
        let normal1 = try await harness.submitAndRoute()
        let normal2 = try await harness.submitAndRoute()
        let urgent = try await harness.submitAndRoute(priority: .high)
        // Positions in line as the dispatcher saw them: normal tasks behind those before them,
        // the high-priority one first of its lane.
        #expect(try await harness.fixture.transport.tasks.get(id: normal1)?.queuePositionAtDispatch == 1)
        #expect(try await harness.fixture.transport.tasks.get(id: normal2)?.queuePositionAtDispatch == 2)
        #expect(try await harness.fixture.transport.tasks.get(id: urgent)?.queuePositionAtDispatch == 1)
        let lanes = harness.context.workerQueue(pool: "default", highLaneCheck: .milliseconds(100))
        var order: [String] = []
        for _ in 0..<3 {
            let batch = try await lanes.receive(maxMessages: 1, wait: .seconds(1), visibilityTimeout: .seconds(30))
            let message = try #require(batch.first)
            order.append(message.attributes[MessageAttribute.taskID] ?? "")
            try await lanes.delete(receiptHandle: message.receiptHandle)
        }
        #expect(order.first == urgent)
        #expect(Set(order) == [normal1, normal2, urgent])
        #expect(try await lanes.depth() == QueueDepth(visible: 0, inFlight: 0))
    }

    @Test(arguments: TransportKind.available)
    func deadlinesAndCancelsStopATaskBeforeAGPUIsSpent(_ kind: TransportKind) async throws {
        let harness = try await Harness.make(kind)
        let late = try await harness.submitAndRoute(deadline: EpochClock.nowMillis() - 1)
        let cancelled = try await harness.submitAndRoute(status: .cancelled)
        let results = try await harness.results()
        #expect(Set(results.map(\.id)) == [late, cancelled])
        #expect(results.first { $0.id == late }?.error.code == "deadline_exceeded")
        // The cancel was not announced yet: its ending is forwarded, not run.
        #expect(results.first { $0.id == cancelled }?.outcome == .cancelled)
        let lanes = harness.context.workerQueue(pool: "default")
        #expect(try await lanes.depth() == QueueDepth(visible: 0, inFlight: 0))
    }

    @Test(arguments: TransportKind.available)
    func deadLettersFromEitherLaneFailWithTheirAttempts(_ kind: TransportKind) async throws {
        let harness = try await Harness.make(kind)
        let names = harness.context.names
        for lane in names.workerQueues("default") {
            let dead = QueueMessage(
                messageID: "m", body: "garbage", attributes: [MessageAttribute.taskID: "01task-\(lane)", MessageAttribute.pool: "default"],
                receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
            #expect(await harness.dispatcher.deadLettered(dead, from: lane) == .delete)
        }
        let results = try await harness.results()
        #expect(results.count == 2)
        #expect(results.allSatisfy { $0.error.code == "dead_lettered" && $0.attempt == 3 && $0.pool == "default" })
        #expect(results.allSatisfy { $0.error.message.contains("after 3 attempts") })
    }
}
