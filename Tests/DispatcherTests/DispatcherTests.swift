import Dispatcher
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

@Suite struct DispatcherTests {
    static let pools = try! PoolConfiguration(pools: [
        PoolSpec(name: "default", runtime: "emulator", models: ["emulator-v1"]),
        PoolSpec(name: "sdxl", runtime: "sdwebui", models: ["sdxl-base", "juggernaut-xl"]),
    ])

    struct Harness {
        let fixture: EmbeddedFixture
        let dispatcher: Dispatcher

        static func make() async throws -> Harness {
            let fixture = try await EmbeddedFixture.make(pools: DispatcherTests.pools)
            return Harness(fixture: fixture, dispatcher: Dispatcher(context: fixture.context, logger: testLogger()))
        }

        var names: ResourceNames { fixture.context.names }

        /// Creates the record and returns a dispatch-queue message for the task.
        func message(for task: Sdq_V1_GenerationTask, status: TaskStatus = .queued) async throws -> QueueMessage {
            _ = try await fixture.transport.tasks.create(makeRecord(id: task.id, status: status))
            let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
            return QueueMessage(messageID: "m", body: encoded.body, attributes: encoded.attributes, receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
        }

        func drain(_ queue: String) async throws -> [QueueMessage] {
            try await fixture.queue(queue).receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        }

        func results() async throws -> [Sdq_V1_TaskResult] {
            try await drain(names.resultsQueue).map { try MessageCodec.decode(Sdq_V1_TaskResult.self, body: $0.body, attributes: $0.attributes) }
        }
    }

    static func task(pool: String = "", model: String = "") -> Sdq_V1_GenerationTask {
        var task = Sdq_V1_GenerationTask()
        task.id = TaskID.generate()
        task.pool = pool
        task.model = model
        task.parameters.prompt = "x"
        return task
    }

    @Test func routesByPoolNameAndMarksTheTaskDispatched() async throws {
        let harness = try await Harness.make()
        let task = Self.task(pool: "sdxl")
        #expect(await harness.dispatcher.route(try await harness.message(for: task)) == .delete)
        let routed = try await harness.drain(harness.names.poolQueue("sdxl"))
        #expect(routed.count == 1)
        #expect(routed[0].attributes[MessageAttribute.pool] == "sdxl")
        let sent = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: routed[0].body, attributes: routed[0].attributes)
        #expect(sent.model == "sdxl-base")
        #expect(sent.runtime == .sdwebui)
        let record = try await harness.fixture.transport.tasks.get(id: task.id)
        #expect(record?.status == .dispatched)
        #expect(record?.timings.dispatchedAt != nil)
    }

    @Test func routesByModelAffinityWithoutAPool() async throws {
        let harness = try await Harness.make()
        #expect(await harness.dispatcher.route(try await harness.message(for: Self.task(model: "juggernaut-xl"))) == .delete)
        #expect(try await harness.drain(harness.names.poolQueue("sdxl")).count == 1)
        #expect(await harness.dispatcher.route(try await harness.message(for: Self.task())) == .delete)
        #expect(try await harness.drain(harness.names.poolQueue("default")).count == 1)
    }

    /// A fixed model several pools list goes where a live worker has it loaded (its heartbeat's
    /// `loaded_model`), as a registered checkpoint does (``ModelAffinityTests``); warm nowhere,
    /// to its home pool, and the tasks after it follow.
    @Test func amongPoolsServingAModelTheOneWithItLoadedWins() async throws {
        let pools = try PoolConfiguration(pools: [
            PoolSpec(name: "default", runtime: "emulator", models: ["emulator-v1"]),
            PoolSpec(name: "l4", runtime: "sdwebui", models: ["sdxl-base"]),
            PoolSpec(name: "h100", runtime: "sdwebui", models: ["sdxl-base"]),
        ])
        let fixture = try await EmbeddedFixture.make(pools: pools)
        /// Routes tasks for sdxl-base with a fresh dispatcher (no recent placements); the pools they went to.
        func routed(_ count: Int = 1) async throws -> [String] {
            var dispatcher = Dispatcher(context: fixture.context, logger: testLogger())
            dispatcher.fleetRefresh = .zero
            let harness = Harness(fixture: fixture, dispatcher: dispatcher)
            var chosen: [String] = []
            for _ in 0..<count {
                #expect(await harness.dispatcher.route(try await harness.message(for: Self.task(model: "sdxl-base"))) == .delete)
                for pool in ["l4", "h100"] where try await !harness.drain(harness.names.poolQueue(pool)).isEmpty {
                    chosen.append(pool)
                }
            }
            return chosen
        }
        // Warm nowhere: one pool (its home), and the next tasks follow the first.
        let first = try await routed(3)
        #expect(first.count == 3 && Set(first).count == 1)
        let home = try #require(first.first)
        let other = home == "l4" ? "h100" : "l4"
        // A live worker of the other pool reports it loaded: the task goes there.
        let now = EpochClock.nowMillis()
        var beat = WorkerHeartbeat(pool: other, worker: "\(other)-w", state: .idle, runtimeReachable: true, startedAt: now, seenAt: now, expiresAt: now + 30_000)
        beat.loadedModel = "sdxl-base"
        try await fixture.transport.tasks.recordHeartbeat(beat)
        #expect(try await routed() == [other])
        // A heartbeat that expired (the worker went away) does not count.
        beat.seenAt = now - 60_000
        beat.expiresAt = now - 30_000
        try await fixture.transport.tasks.recordHeartbeat(beat)
        #expect(try await routed() == [home])
    }

    @Test(arguments: [("gpu-h100", "", "unknown_pool"), ("", "sd-1.5", "unknown_model"), ("default", "sdxl-base", "unknown_model")])
    func unroutableTasksFailWithAClearErrorInsteadOfQueueing(pool: String, model: String, code: String) async throws {
        let harness = try await Harness.make()
        let task = Self.task(pool: pool, model: model)
        #expect(await harness.dispatcher.route(try await harness.message(for: task)) == .delete)
        #expect(try await harness.drain(harness.names.poolQueue("default")).isEmpty)
        #expect(try await harness.drain(harness.names.poolQueue("sdxl")).isEmpty)
        let results = try await harness.results()
        #expect(results.count == 1)
        #expect(results.first?.id == task.id)
        #expect(results.first?.outcome == .failed)
        #expect(results.first?.error.code == code)
    }

    @Test func cancelledTasksAreDroppedBeforeAGPUIsSpentAndTheirEndingForwarded() async throws {
        let harness = try await Harness.make()
        let task = Self.task()
        #expect(await harness.dispatcher.route(try await harness.message(for: task, status: .cancelled)) == .delete)
        #expect(try await harness.drain(harness.names.poolQueue("default")).isEmpty)
        // Not announced yet (the cancel's own result may be lost): a `cancelled` result ends it.
        let results = try await harness.results()
        #expect(results.map(\.id) == [task.id])
        #expect(results.first?.outcome == .cancelled)
        #expect(results.first?.trace.traceparent.isEmpty == false)
    }

    @Test func aRedeliveredMessageForADispatchedTaskIsNotRoutedAgain() async throws {
        let harness = try await Harness.make()
        #expect(await harness.dispatcher.route(try await harness.message(for: Self.task(), status: .dispatched)) == .delete)
        #expect(try await harness.drain(harness.names.poolQueue("default")).isEmpty)
        #expect(try await harness.results().isEmpty)
    }

    @Test func theSameMessageRedeliveredAfterItsSendFailedIsRoutedAgainButNoOtherMessageIs() async throws {
        let harness = try await Harness.make()
        let task = Self.task()
        let message = try await harness.message(for: task)
        // The dispatch was recorded by this message, then its lane send did not happen.
        let recorded = try await harness.fixture.transport.tasks.apply(
            .dispatched(pool: "default", model: "emulator-v1", at: 1, queuePosition: 1, message: message.messageID), to: task.id)
        guard case .applied(let after) = recorded else { Issue.record("dispatch not recorded: \(recorded)"); return }
        #expect(after.status == .dispatched && after.dispatchMessage == message.messageID)
        var other = message
        other.messageID = "another"
        #expect(await harness.dispatcher.route(other) == .delete)
        #expect(try await harness.drain(harness.names.poolQueue("default")).isEmpty)
        #expect(await harness.dispatcher.route(message) == .delete)
        #expect(try await harness.drain(harness.names.poolQueue("default")).count == 1)
        #expect(try await harness.results().isEmpty)
    }

    @Test func expiredDeadlinesFailTheTask() async throws {
        let harness = try await Harness.make()
        var task = Self.task()
        task.deadlineMs = EpochClock.nowMillis() - 1000
        #expect(await harness.dispatcher.route(try await harness.message(for: task)) == .delete)
        #expect(try await harness.results().first?.error.code == "deadline_exceeded")
        #expect(try await harness.drain(harness.names.poolQueue("default")).isEmpty)
    }

    @Test func undecodableMessagesAreRejectedNotDeleted() async throws {
        let harness = try await Harness.make()
        let garbage = QueueMessage(messageID: "m", body: "!!!", attributes: [:], receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
        #expect(await harness.dispatcher.route(garbage) == .reject)
    }

    @Test func deadLettersBecomeVisibleFailures() async throws {
        let harness = try await Harness.make()
        let dead = QueueMessage(
            messageID: "m", body: "garbage", attributes: [MessageAttribute.taskID: "01task"], receiptHandle: "r", receiveCount: 1,
            sentAtMillis: 0)
        #expect(await harness.dispatcher.deadLettered(dead, from: harness.names.poolQueue("default")) == .delete)
        let results = try await harness.results()
        #expect(results.map(\.id) == ["01task"])
        #expect(results.first?.error.code == "dead_lettered")
        let anonymous = QueueMessage(messageID: "m", body: "garbage", attributes: [:], receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
        #expect(await harness.dispatcher.deadLettered(anonymous, from: "q") == .retry(after: .seconds(3600)))
    }
}
