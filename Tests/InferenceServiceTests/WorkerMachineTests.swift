@testable import InferenceService
import SDQPlatform
import Testing

/// The worker's pipeline as a state machine, driven with plain events and times: what it asks to
/// receive, prepare, run, settle, release, extend and hand back, and when.
@Suite struct WorkerMachineTests {
    typealias Machine = WorkerMachine<String, String, String>

    /// A machine with `prefetch` 1 and one job queued ahead: three messages in the pipeline.
    static func machine(prefetch: Int = 1, queueAhead: Int = 1, uploads: Int = 2) -> Machine {
        Machine(
            limits: .init(prefetch: prefetch, queueAhead: queueAhead, uploads: uploads), visibility: .seconds(30),
            heartbeat: .seconds(10))
    }

    static func incoming(_ receipts: String...) -> Machine.Event {
        .received(receipts.map { .init(receipt: $0, label: "task-\($0)", message: "message-\($0)") })
    }

    @Test func itReceivesUntilThePipelineIsFullAndNoFurther() {
        var m = Self.machine()
        #expect(m.send(.start) == ["receive"])
        #expect(m.send(Self.incoming("a")) == ["prepare a", "receive"])
        #expect(m.send(Self.incoming("b")) == ["prepare b", "receive"])
        #expect(m.send(Self.incoming("c")) == ["prepare c"], "a, b and c fill prefetch + running + queued ahead")
        #expect(m.send(.prepared(receipt: "a", "job-a", model: "m1")) == ["run job-a exclusive"])
        #expect(m.send(.ran(receipt: "a", "done-a")) == ["settle done-a", "receive"], "an outcome with an upload slot frees its place")
    }

    @Test func anEmptyReceiveAsksAgain() {
        var m = Self.machine()
        _ = m.send(.start)
        #expect(m.send(.received([])) == ["receive"])
    }

    /// The first job (the runtime's model is unknown) has the runtime to itself; later jobs of the
    /// same model go one ahead, each once the one before was submitted; a model change waits for
    /// an idle runtime again.
    @Test func jobsQueueAheadOnlyOnceSubmittedAndAModelSwitchWaitsForAnIdleRuntime() {
        var m = Self.machine(prefetch: 3)
        _ = m.send(.start)
        for receipt in ["a", "b", "c", "d"] { _ = m.send(Self.incoming(receipt)) }
        #expect(m.send(.prepared(receipt: "a", "job-a", model: "m1")) == ["run job-a exclusive"])
        #expect(m.send(.prepared(receipt: "b", "job-b", model: "m1")).isEmpty, "the first job holds every place")
        #expect(m.send(.submitted(receipt: "a")).isEmpty)
        #expect(m.send(.runtimeReleased(receipt: "a")) == ["run job-b"])
        #expect(m.send(.prepared(receipt: "c", "job-c", model: "m1")).isEmpty, "b is not yet submitted")
        #expect(m.send(.submitted(receipt: "b")) == ["run job-c"], "c waits in the runtime's queue behind b")
        #expect(m.send(.prepared(receipt: "d", "job-d", model: "m2")).isEmpty)
        #expect(m.send(.submitted(receipt: "c")).isEmpty, "a model switch never lands under a running job")
        #expect(m.send(.runtimeReleased(receipt: "b")).isEmpty, "c is still at the runtime")
        #expect(m.send(.runtimeReleased(receipt: "c")) == ["run job-d exclusive"])
        #expect(m.lastModel == "m2")
    }

    @Test func withoutQueueingAheadOneJobAtATime() {
        var m = Self.machine(prefetch: 2, queueAhead: 0)
        _ = m.send(.start)
        _ = m.send(Self.incoming("a"))
        _ = m.send(Self.incoming("b"))
        #expect(m.send(.prepared(receipt: "a", "job-a", model: "")) == ["run job-a exclusive"])
        #expect(m.send(.prepared(receipt: "b", "job-b", model: "")).isEmpty)
        #expect(m.send(.submitted(receipt: "a")).isEmpty)
        #expect(m.send(.runtimeReleased(receipt: "a")) == ["run job-b exclusive"], "an unnamed model may be anything")
    }

    @Test func uploadsWaitForASlotAndHoldTheirPipelinePlaceUntilThen() {
        var m = Self.machine(prefetch: 2, uploads: 1)
        _ = m.send(.start)
        _ = m.send(Self.incoming("a"))
        _ = m.send(Self.incoming("b"))
        _ = m.send(.prepared(receipt: "a", "job-a", model: "m"))
        _ = m.send(.runtimeReleased(receipt: "a"))
        _ = m.send(.prepared(receipt: "b", "job-b", model: "m"))
        #expect(m.send(.ran(receipt: "a", "done-a")) == ["settle done-a"])
        #expect(m.send(.ran(receipt: "b", "done-b")).isEmpty, "one upload at a time")
        #expect(m.inPipeline == 2, "b waits for its upload slot in the pipeline, beside the receive in flight")
        #expect(m.send(.settled(receipt: "a", .delete)) == ["release a delete", "settle done-b"])
        #expect(m.leases.leases["a"] == nil, "a released message is no longer extended")
        #expect(m.send(.released(receipt: "a")).isEmpty)
    }

    @Test func aMessageSettledWhilePreparingIsReleasedAndFreesItsPlace() {
        var m = Self.machine(prefetch: 0, queueAhead: 0)
        _ = m.send(.start)
        #expect(m.send(Self.incoming("a")) == ["prepare a"])
        #expect(m.send(.settledEarly(receipt: "a", .reject)) == ["release a reject", "receive"])
        #expect(m.leases.leases.isEmpty)
    }

    @Test func failedReceivesBackOffDoublingUpToTenSecondsAndResetOnSuccess() {
        var m = Self.machine()
        _ = m.send(.start)
        var delays: [Duration] = []
        for _ in 0..<8 {
            for case .receive(let after) in m.handle(.receiveFailed, now: .zero) { delays.append(after) }
        }
        #expect(delays == [200, 400, 800, 1600, 3200, 6400, 10000, 10000].map { Duration.milliseconds($0) })
        let next = m.handle(.received([]), now: .zero)
        guard case .receive(let after)? = next.first else {
            Issue.record("expected a receive, got \(next.map(Self.describe))")
            return
        }
        #expect(after == .zero)
    }

    /// Each lease is extended one heartbeat after its last extension; an extension never
    /// confirmed loses the lease at its visibility deadline.
    @Test func heartbeatTicksExtendDueLeasesAndReportLostOnes() {
        var m = Self.machine()
        _ = m.send(.start)
        _ = m.send(Self.incoming("a"), at: .zero)
        _ = m.send(Self.incoming("b"), at: .seconds(4))
        #expect(m.nextTick(now: .seconds(4), interval: .seconds(10)) == .seconds(10))
        #expect(m.send(.tick, at: .seconds(10)) == ["extend a"])
        _ = m.send(.extended(receipt: "a", at: .seconds(10)), at: .seconds(10))
        #expect(m.send(.tick, at: .seconds(14)) == ["extend b"])  // never confirmed
        #expect(m.send(.tick, at: .seconds(20)) == ["extend a"])
        #expect(m.send(.tick, at: .seconds(24)) == ["extend b"])
        #expect(m.send(.tick, at: .seconds(34)) == ["lost task-b", "extend a"], "b's visibility, confirmed last at its receipt, ran out")
        #expect(m.leases.leases.keys.sorted() == ["a"])
    }

    /// Shutdown: nothing more is received or started; a receive in flight and jobs not yet at the
    /// runtime keep their messages, a job stopped by shutdown too; finished work is still
    /// uploaded and released; then, with nothing in flight, every held message goes back at once.
    @Test func shutdownDrainsUploadsThenHandsBackWhatItHolds() {
        var m = Self.machine(prefetch: 2)
        _ = m.send(.start)
        _ = m.send(Self.incoming("a"))
        _ = m.send(Self.incoming("b"))
        _ = m.send(Self.incoming("c"))
        _ = m.send(.prepared(receipt: "a", "job-a", model: "m"))
        _ = m.send(.submitted(receipt: "a"))
        _ = m.send(.runtimeReleased(receipt: "a"))
        _ = m.send(.prepared(receipt: "b", "job-b", model: "m"))  // runs, queued ahead
        #expect(m.receiving)
        #expect(m.send(.ran(receipt: "a", "done-a")) == ["settle done-a"])
        #expect(m.send(.shutdown).isEmpty)
        #expect(m.send(.prepared(receipt: "c", "job-c", model: "m")).isEmpty, "no job starts after shutdown")
        #expect(m.send(Self.incoming("d")).isEmpty, "what the receive in flight brings is held")
        #expect(m.send(.ran(receipt: "b", nil)).isEmpty, "b was stopped by shutdown")
        #expect(m.send(.settled(receipt: "a", .delete)) == ["release a delete"])
        #expect(m.send(.released(receipt: "a")) == ["finish b,c,d"])
        #expect(m.phase == .finished && m.leases.leases.isEmpty)
        #expect(m.send(.tick, at: .seconds(60)).isEmpty)
    }

    @Test func shutdownWithNothingInFlightFinishesWhenTheReceiveAnswers() {
        var m = Self.machine()
        _ = m.send(.start)
        #expect(m.send(.shutdown).isEmpty, "the long poll in flight is left to answer")
        #expect(m.send(.received([])) == ["finish "])
    }

    /// Cancelled: whatever is still leased goes back, and a release asked for but not confirmed
    /// is returned with its own disposition (its action may never have been performed); a release
    /// confirmed is not; nothing changes afterwards.
    @Test func stoppingReturnsTheLeasedAndTheUnconfirmedReleases() {
        var m = Self.machine(prefetch: 3)
        _ = m.send(.start)
        for receipt in ["a", "b", "c", "d"] { _ = m.send(Self.incoming(receipt)) }
        _ = m.send(.settledEarly(receipt: "b", .reject))
        _ = m.send(.settledEarly(receipt: "c", .delete))
        _ = m.send(.released(receipt: "c"))
        let unfinished = m.stop().map { "\($0.receipt) \($0.disposition)" }
        #expect(unfinished == ["a \(MessageDisposition.retry(after: .zero))", "b reject", "d \(MessageDisposition.retry(after: .zero))"])
        #expect(m.send(Self.incoming("e")).isEmpty)
        #expect(m.stop().isEmpty)
    }

    // MARK: Helpers

    static func describe(_ action: Machine.Action) -> String {
        switch action {
        case .receive: "receive"
        case .prepare(let receipt, _): "prepare \(receipt)"
        case .run(_, let job, let exclusive): exclusive ? "run \(job) exclusive" : "run \(job)"
        case .settle(_, let outcome): "settle \(outcome)"
        case .release(let receipt, let disposition): "release \(receipt) \(disposition)"
        case .extend(let receipts, _): "extend \(receipts.joined(separator: ","))"
        case .lost(let labels): "lost \(labels.joined(separator: ","))"
        case .finish(let receipts): "finish \(receipts.joined(separator: ","))"
        }
    }
}

extension WorkerMachine<String, String, String> {
    /// Handles `event` and describes the actions (see ``WorkerMachineTests/describe(_:)``).
    mutating func send(_ event: Event, at now: Duration = .zero) -> [String] {
        handle(event, now: now).map(WorkerMachineTests.describe)
    }
}
