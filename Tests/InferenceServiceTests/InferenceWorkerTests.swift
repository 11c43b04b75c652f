import Crypto
import Foundation
import InferenceService
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

@Suite struct InferenceWorkerTests {
    struct Harness {
        let fixture: EmbeddedFixture

        static func make(maxReceiveCount: Int = 3) async throws -> Harness {
            Harness(fixture: try await EmbeddedFixture.make(pools: try fastPools(maxReceiveCount: maxReceiveCount)))
        }

        var names: ResourceNames { fixture.context.names }
        var poolQueue: any MessageQueue { fixture.queue(names.poolQueue("default")) }

        func worker(
            stepDelay: Duration, visibility: Duration = .seconds(30), heartbeat: Duration? = nil, id: String = "worker-a",
            runtime: (any RuntimeBackend)? = nil
        ) -> InferenceWorker {
            InferenceWorker(
                context: fixture.context, runtime: runtime ?? EmulatorRuntime(stepDelay: stepDelay),
                configuration: InferenceConfiguration(
                    pool: "default", workerID: id, visibilityTimeout: visibility, heartbeatInterval: heartbeat,
                    receiveWait: .milliseconds(200), progressInterval: .milliseconds(200)),
                logger: testLogger())
        }

        /// Records a dispatched task and puts it on the pool queue.
        @discardableResult
        func enqueue(steps: UInt32 = 4, seed: Int64 = 5, deadlineMs: Int64 = 0) async throws -> Sdq_V1_GenerationTask {
            var task = Sdq_V1_GenerationTask()
            task.id = TaskID.generate()
            task.pool = "default"
            task.model = "emulator-v1"
            task.parameters.prompt = "worker test"
            task.parameters.seed = seed
            task.parameters.width = 64
            task.parameters.height = 64
            task.parameters.steps = steps
            task.parameters.batchSize = 1
            task.output.prefix = "outputs/\(task.id)/"
            task.deadlineMs = deadlineMs
            task.submittedAtMs = EpochClock.nowMillis()
            _ = try await fixture.transport.tasks.create(makeRecord(id: task.id, status: .dispatched))
            let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
            try await poolQueue.send(body: encoded.body, attributes: encoded.attributes)
            return task
        }

        func results() async throws -> [Sdq_V1_TaskResult] {
            try await fixture.queue(names.resultsQueue).receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
                .map { try MessageCodec.decode(Sdq_V1_TaskResult.self, body: $0.body, attributes: $0.attributes) }
        }

        func status(_ id: String) async throws -> TaskStatus? { try await fixture.transport.tasks.get(id: id)?.status }
    }

    @Test func runsATaskStoresItsImagesAndReportsTheResult() async throws {
        let harness = try await Harness.make()
        let task = try await harness.enqueue()
        let results = try await whileRunning([harness.worker(stepDelay: .milliseconds(5))]) { _ in
            let collected = Accumulator<Sdq_V1_TaskResult>()
            _ = await eventually {
                await collected.append(try await harness.results())
                return await collected.count > 0
            }
            return await collected.items
        }
        #expect(results.count == 1)
        let result = try #require(results.first)
        #expect(result.id == task.id)
        #expect(result.outcome == .succeeded)
        #expect(result.worker.workerID == "worker-a")
        #expect(result.timings.runtimeFinishedAtMs >= result.timings.runtimeStartedAtMs)
        let image = try #require(result.images.first)
        #expect(image.object.key == "outputs/\(task.id)/image-0.png")
        #expect(image.width == 64 && image.height == 64 && image.seed == 5)
        let stored = try #require(try await harness.fixture.transport.objects.get(key: image.object.key))
        #expect(SHA256.hash(data: stored.data).map { String(format: "%02x", $0) }.joined() == image.object.sha256)
        #expect(stored.contentType == "image/png")
        #expect(try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 0))
        let record = try await harness.fixture.transport.tasks.get(id: task.id)
        #expect(record?.status == .running)  // the result-writer finalises (and sets progress 1), not the worker
    }

    @Test func progressIsWrittenWhileTheTaskRunsWithoutHoldingTheRuntime() async throws {
        let harness = try await Harness.make()
        let task = try await harness.enqueue(steps: 100)
        try await whileRunning([harness.worker(stepDelay: .milliseconds(20))]) { _ in
            #expect(await eventually {
                let record = try await harness.fixture.transport.tasks.get(id: task.id)
                return record?.status == .running && (record?.progress ?? 0) > 0 && (record?.progress ?? 1) < 1
            })
        }
    }

    @Test func aCancelIsSeenEvenWhenTheRuntimeReportsNoProgress() async throws {
        let harness = try await Harness.make()
        let task = try await harness.enqueue(steps: 2)
        let stuck = StuckRuntime()
        let worker = InferenceWorker(
            context: harness.fixture.context, runtime: stuck,
            configuration: InferenceConfiguration(pool: "default", receiveWait: .milliseconds(200), progressInterval: .milliseconds(200)),
            logger: testLogger())
        try await whileRunning([worker]) { _ in
            #expect(await eventually { try await harness.status(task.id) == .running })
            // Announced already (as the result-writer would have): nothing is owed.
            _ = try await harness.fixture.transport.tasks.update(id: task.id, ifStatusIn: TaskStatus.nonTerminal) {
                $0.status = .cancelled
                $0.announcedAt = EpochClock.nowMillis()
            }
            // The watcher reads the record every progress interval and stops the runtime.
            #expect(await eventually(timeout: .seconds(10)) { try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 0) })
        }
        #expect(try await harness.results().isEmpty)
    }

    @Test func aGracefulStopHandsTheRunningTaskBackAtOnce() async throws {
        let harness = try await Harness.make()
        let task = try await harness.enqueue(steps: 200)
        try await whileRunning([harness.worker(stepDelay: .milliseconds(50), visibility: .seconds(60))]) { services in
            #expect(await eventually { try await harness.status(task.id) == .running })
            await services.stop()
        }
        // Visibility was 60 s: only an explicit hand-back makes it visible now.
        let again = try await harness.poolQueue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil)
        #expect(again.count == 1)
        #expect(again.first?.attributes[MessageAttribute.taskID] == task.id)
        #expect(try await harness.results().isEmpty)
    }

    @Test func aGracefulStopHandsBackTheRunningAndThePrefetchedTaskAndExitsPromptly() async throws {
        let harness = try await Harness.make()
        let running = try await harness.enqueue(steps: 200)
        let prefetched = try await harness.enqueue(steps: 200)
        let stopped = try await whileRunning([harness.worker(stepDelay: .milliseconds(50), visibility: .seconds(60))]) { services in
            #expect(await eventually { try await harness.status(running.id) == .running })
            // The second task is received (prefetched) while the first runs.
            #expect(await eventually { try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 2) })
            let started = ContinuousClock.now
            await services.stop()
            return started
        }
        // Exit within the grace period: far less than the 10 s the running task had left, and than
        // the receiver's 200 ms long poll plus the hand-backs would need with any margin.
        #expect(ContinuousClock.now - stopped < .seconds(5))
        // Both messages were handed back at once (visibility was 60 s); neither ran to a result.
        #expect(try await harness.poolQueue.depth() == QueueDepth(visible: 2, inFlight: 0))
        let again = try await harness.poolQueue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        #expect(Set(again.compactMap { $0.attributes[MessageAttribute.taskID] }) == [running.id, prefetched.id])
        #expect(try await harness.results().isEmpty)
        #expect(try await harness.status(prefetched.id) == .dispatched)
    }

    @Test func visibilityIsExtendedWhileATaskRunsLongerThanTheTimeout() async throws {
        let harness = try await Harness.make()
        let task = try await harness.enqueue(steps: 25)
        let spied = try await whileRunning([
            harness.worker(stepDelay: .milliseconds(280), visibility: .seconds(3), heartbeat: .milliseconds(300))
        ]) { _ in await Self.competeFor(task.id, harness: harness) }
        // The task takes 7 s against a 3 s visibility timeout (extended every 0.3 s, so a
        // heartbeat may be late by over two seconds on a busy machine, as the whole suite's first
        // seconds on two cores are): a competing consumer must see nothing.
        #expect(spied.running)
        #expect(spied.finished == [task.id])
        #expect(spied.stolen == 0)
    }

    /// Polls the pool queue as a competing consumer until the task's result appears.
    static func competeFor(_ id: String, harness: Harness) async -> (running: Bool, stolen: Int, finished: [String]) {
        let running = await eventually { try await harness.status(id) == .running }
        let stolen = Accumulator<QueueMessage>()
        let results = Accumulator<Sdq_V1_TaskResult>()
        _ = await eventually(timeout: .seconds(20), interval: .milliseconds(100)) {
            await stolen.append(try await harness.poolQueue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30)))
            await results.append(try await harness.results())
            return await results.count > 0
        }
        return (running, await stolen.count, await results.items.map(\.id))
    }

    @Test func theNextTaskIsReceivedWhileTheCurrentOneRuns() async throws {
        let harness = try await Harness.make()
        let first = try await harness.enqueue(steps: 40)
        try await harness.enqueue(steps: 1)
        try await whileRunning([harness.worker(stepDelay: .milliseconds(50))]) { _ in
            #expect(await eventually { try await harness.status(first.id) == .running })
            #expect(await eventually { try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 2) })
            #expect(await eventually(timeout: .seconds(20)) { try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 0) })
        }
    }

    @Test func cancellingARunningTaskStopsItAndForwardsTheCancel() async throws {
        let harness = try await Harness.make()
        let task = try await harness.enqueue(steps: 400)
        try await whileRunning([harness.worker(stepDelay: .milliseconds(20))]) { _ in
            #expect(await eventually { try await harness.status(task.id) == .running })
            _ = try await harness.fixture.transport.tasks.apply(.cancelled(at: EpochClock.nowMillis(), message: "stop"), to: task.id)
            #expect(await eventually { try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 0) })
        }
        // No image result: the cancel's ending, forwarded because nobody announced it yet.
        let results = try await harness.results()
        #expect(results.map(\.outcome) == [.cancelled])
        #expect(results.first?.images.isEmpty == true && results.first?.error.message == "stop")
    }

    @Test func aTaskPastItsDeadlineIsInterruptedAndFailsForGood() async throws {
        let harness = try await Harness.make()
        let task = try await harness.enqueue(steps: 500, deadlineMs: EpochClock.nowMillis() + 400)
        let results = try await whileRunning([harness.worker(stepDelay: .milliseconds(10))]) { _ in
            let collected = Accumulator<Sdq_V1_TaskResult>()
            _ = await eventually(timeout: .seconds(10)) {
                await collected.append(try await harness.results())
                return await collected.count > 0
            }
            return await collected.items
        }
        let result = try #require(results.first)
        #expect(result.id == task.id)
        #expect(result.outcome == .failed)
        #expect(result.error.code == "deadline_exceeded")
        #expect(!result.error.retryable)
        // Stopped near the deadline, far short of the 5 s the 500 steps would take.
        #expect(result.timings.runtimeFinishedAtMs - result.timings.runtimeStartedAtMs < 3000)
        #expect(try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 0))
    }

    @Test func undecodableMessagesEndInTheDeadLetterQueue() async throws {
        let harness = try await Harness.make(maxReceiveCount: 2)
        try await harness.poolQueue.send(body: "not a task", attributes: [MessageAttribute.taskID: "broken"])
        let dlq = harness.fixture.queue(harness.names.deadLetterQueue(of: harness.names.poolQueue("default")))
        try await whileRunning([harness.worker(stepDelay: .zero)]) { _ in
            #expect(await eventually { try await dlq.depth().visible == 1 })
        }
        #expect(try await harness.poolQueue.depth() == QueueDepth(visible: 0, inFlight: 0))
        #expect(try await dlq.receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil).first?.body == "not a task")
    }
}

/// A runtime that never reports progress: it asks whether to go on every 20 ms without a value
/// change, the way a stuck GPU looks from the outside.
struct StuckRuntime: RuntimeBackend {
    let name = "stuck"
    func run(_ job: RuntimeJob, window: RuntimeWindow, progress: @escaping @Sendable (Double) async -> Bool)
        async throws(RuntimeError) -> [RuntimeImage]
    {
        while await progress(0) {
            do { try await Task.sleep(for: .milliseconds(20)) } catch {
                throw RuntimeError(code: "cancelled", message: "cancelled", retryable: true)
            }
        }
        throw RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false)
    }
}
