import Clocks
@testable import InferenceService
import SDQPlatform
import SDQTestSupport
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// The worker's pipeline driver with its effects replaced by doubles that record what they are
/// asked and wait on the test's say-so, and a test clock for the heartbeat: tasks flow through in
/// order with the next one queued at the runtime, graceful shutdown hands back what was not done,
/// and leases are extended on time — with no sleeps.
@Suite struct WorkerDriverTests {
    static func driver(_ effects: ScriptedEffects, prefetch: Int = 1, clock: ServiceClock = .continuous) -> WorkerDriver<ScriptedEffects> {
        WorkerDriver(
            effects: effects, limits: .init(prefetch: prefetch, queueAhead: 1, uploads: 1), visibility: .seconds(30),
            heartbeat: .seconds(10), clock: clock)
    }

    /// Three tasks: the first has the runtime to itself, the second runs after it, and the third
    /// is handed to the runtime while the second still runs (it waits in the runtime's queue).
    @Test func tasksFlowThroughInOrderWithTheNextQueuedAtTheRuntime() async {
        let effects = ScriptedEffects()
        let driver = Self.driver(effects)
        await testGracefulShutdown { trigger in
            let running = Task { await driver.run() }
            for receipt in ["a", "b", "c"] { await effects.mailbox.post(receipt) }
            await effects.log.wait(for: "run a")
            await effects.gates.open("a")
            await effects.log.wait(for: "run b")
            await effects.log.wait(for: "run c")  // b's gate is still closed: c is queued behind it
            await effects.gates.open("b")
            await effects.gates.open("c")
            await effects.log.wait(for: "release c delete")
            trigger.triggerGracefulShutdown()
            await effects.mailbox.close()  // the long poll in flight answers empty
            #expect(await running.value.isEmpty)
        }
        let log = await effects.log.entries
        #expect(log.filter { $0.hasPrefix("run") } == ["run a", "run b", "run c"])
        #expect(log.firstIndex(of: "run b")! > log.firstIndex(of: "end a")!, "the first task had the runtime to itself")
        #expect(log.firstIndex(of: "run c")! < log.firstIndex(of: "end b")!, "c waited at the runtime while b ran")
        #expect(log.filter { $0.hasPrefix("release") }.sorted() == ["release a delete", "release b delete", "release c delete"])
        #expect(!log.contains { $0.hasSuffix("hand back") })
    }

    /// Graceful shutdown stops the running job; the job waiting for the runtime never starts;
    /// both messages go back to the queue at once (visibility 0), and nothing is settled.
    @Test func gracefulShutdownHandsBackTheRunningAndTheWaitingTask() async {
        let effects = ScriptedEffects()
        let driver = Self.driver(effects)
        await testGracefulShutdown { trigger in
            let running = Task { await driver.run() }
            await effects.mailbox.post("a")
            await effects.mailbox.post("b")
            await effects.log.wait(for: "run a")
            await effects.log.wait(for: "prepare b")
            trigger.triggerGracefulShutdown()
            await effects.log.wait(for: "stopped a")
            await effects.mailbox.close()
            #expect(await running.value.isEmpty)
            await effects.log.wait(for: "handed back 2")
        }
        let log = await effects.log.entries
        #expect(log.contains("handed back 2"), "the hand-back is reported (operators and the container check read its log line)")
        #expect(!log.contains("run b"))
        #expect(!log.contains { $0.hasPrefix("settle") })
        #expect(log.filter { $0.hasPrefix("release") }.sorted() == ["release a hand back", "release b hand back"])
    }

    /// The heartbeat on a test clock: it sleeps until the next lease is due and extends exactly
    /// the due ones; a lease added while it sleeps is extended on time; a lease whose extensions
    /// fail is lost at its deadline. Each step moves the test clock and waits for what it causes.
    @Test func theHeartbeatExtendsDueLeasesOnTheTestClock() async {
        let testClock = TestClock()
        let sleeps = SleepCounter()
        let effects = ScriptedEffects(failingExtensions: ["c"], holdPreparing: true)
        let driver = Self.driver(effects, prefetch: 2, clock: .counting(testClock, sleeps: sleeps))
        /// Advances the clock by `seconds` and waits until that woke the heartbeat and it sleeps again.
        func step(_ seconds: Int64) async {
            let before = await sleeps.count
            await testClock.advance(by: .seconds(seconds))
            await sleeps.wait(above: before)
        }
        let running = Task { await driver.run() }
        await sleeps.wait(above: 0)  // the heartbeat sleeps
        await effects.mailbox.post("a")  // preparing never ends: the message stays leased
        await effects.log.wait(for: "prepare a")
        await testClock.advance(by: .seconds(4))  // t = 4: nothing due, the heartbeat sleeps on
        await effects.mailbox.post("b")
        await effects.mailbox.post("c")
        await effects.log.wait(for: "prepare c")
        await step(6)  // t = 10
        await effects.log.wait(for: "extend a")
        #expect(await effects.log.entries(prefix: "extend") == ["extend a"], "b and c were received 6 s ago")
        await step(4)  // t = 14
        await effects.log.wait(for: "extend c")
        #expect(await effects.log.entries(prefix: "extend") == ["extend a", "extend b", "extend c"])
        for seconds in [6, 4, 6] as [Int64] {  // t = 20, 24, 30
            let count = await effects.log.entries(prefix: "extend").count
            await step(seconds)
            await effects.log.wait { $0.filter { $0.hasPrefix("extend") }.count > count }
        }
        #expect(await effects.log.entries(prefix: "lost").isEmpty)
        await step(4)  // t = 34: c's visibility, confirmed last at its receipt (4 + 30), ran out
        await effects.log.wait(for: "lost task-c")
        await effects.log.wait { $0.filter { $0.hasPrefix("extend") }.count >= 8 }
        let extends = await effects.log.entries(prefix: "extend")
        #expect(extends.filter { $0 == "extend a" }.count == 3 && extends.filter { $0 == "extend c" }.count == 2)
        #expect(extends.count == 8, "a at 10, 20, 30; b at 14, 24, 34; c at 14, 24")
        running.cancel()
        // Cancelling also cancels a's and b's preparing, which may report in (and ask for their
        // release) before the driver stops: either way both come back to be handed back.
        let unfinished = await running.value
        #expect(unfinished.map(\.receipt) == ["a", "b"], "cancelled: the held leases are returned, the lost one not")
        #expect(unfinished.allSatisfy { $0.disposition == .retry(after: .zero) })
    }
}

/// Effects that record each call in `log` and wait for the test: messages come from `mailbox`,
/// a run waits for its gate (and says when shutdown stopped it), preparing waits for its gate
/// when the message's name is not one of the quick ones.
final class ScriptedEffects: WorkerEffects {
    typealias Message = String
    typealias Job = String
    typealias Outcome = String

    let mailbox = Mailbox()
    let gates = Gates()
    let log = EventLog()
    let failingExtensions: Set<String>
    /// Whether preparing waits for the gate `prepare-<receipt>` (otherwise it returns at once).
    let holdPreparing: Bool

    init(failingExtensions: Set<String> = [], holdPreparing: Bool = false) {
        self.failingExtensions = failingExtensions
        self.holdPreparing = holdPreparing
    }

    func receive() async throws -> [WorkerMachine<String, String, String>.Incoming] {
        guard let receipt = await mailbox.next() else { return [] }
        return [.init(receipt: receipt, label: "task-\(receipt)", message: receipt)]
    }

    func prepare(_ message: String) async -> Result<(job: String, model: String), Settled> {
        await log.append("prepare \(message)")
        if holdPreparing, !(await gates.wait("prepare-\(message)")) { return .failure(Settled(disposition: .retry(after: .zero))) }
        return .success((message, "model"))
    }

    func run(_ job: String, window: RuntimeWindow, exclusive: Bool) async -> String? {
        await log.append("run \(job)")
        window.submitted()
        guard await gates.wait(job) else {
            await log.append("stopped \(job)")
            return nil
        }
        await log.append("end \(job)")
        return job
    }

    func settle(_ outcome: String) async -> MessageDisposition {
        await log.append("settle \(outcome)")
        return .delete
    }

    func release(_ receipt: String, _ disposition: MessageDisposition) async {
        let label = switch disposition {
        case .delete: "delete"
        case .reject: "reject"
        case .retry(let after): after == .zero ? "hand back" : "retry"
        }
        await log.append("release \(receipt) \(label)")
    }

    func extend(_ receipt: String) async throws {
        await log.append("extend \(receipt)")
        if failingExtensions.contains(receipt) { throw CancellationError() }
    }

    func report(_ trouble: WorkerTrouble) {
        if case .leaseLost(let labels) = trouble {
            Task { [log] in for label in labels { await log.append("lost \(label)") } }
        }
        if case .handedBack(let count) = trouble {
            Task { [log] in await log.append("handed back \(count)") }
        }
    }
}

/// Messages posted by a test, taken one at a time by the receiver.
actor Mailbox {
    private var items: [String] = []
    private var waiter: CheckedContinuation<String?, Never>?
    private var closed = false

    func post(_ item: String) {
        if let waiter {
            self.waiter = nil
            waiter.resume(returning: item)
        } else {
            items.append(item)
        }
    }

    /// The next message; nil once closed or when the waiting task is cancelled.
    func next() async -> String? {
        if !items.isEmpty { return items.removeFirst() }
        if closed { return nil }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { waiter = $0 }
        } onCancel: {
            Task { await self.close() }
        }
    }

    func close() {
        closed = true
        waiter?.resume(returning: nil)
        waiter = nil
    }
}

/// Named gates a test opens; a waiter that is cancelled gets false.
actor Gates {
    private var opened: Set<String> = []
    private var waiters: [String: CheckedContinuation<Bool, Never>] = [:]

    func open(_ name: String) {
        opened.insert(name)
        waiters.removeValue(forKey: name)?.resume(returning: true)
    }

    func wait(_ name: String) async -> Bool {
        if opened.contains(name) { return true }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled { continuation.resume(returning: false) } else { waiters[name] = continuation }
            }
        } onCancel: {
            Task { await self.cancel(name) }
        }
    }

    private func cancel(_ name: String) {
        waiters.removeValue(forKey: name)?.resume(returning: false)
    }
}

/// What happened, in order, with waits for an entry to appear.
actor EventLog {
    private(set) var entries: [String] = []
    private var waiters: [(ready: @Sendable ([String]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

    func append(_ entry: String) {
        entries.append(entry)
        let ready = waiters.filter { $0.ready(entries) }
        waiters.removeAll { $0.ready(entries) }
        for waiter in ready { waiter.continuation.resume() }
    }

    func entries(prefix: String) -> [String] { entries.filter { $0.hasPrefix(prefix) } }

    /// Returns once `ready` holds for the entries.
    func wait(_ ready: @escaping @Sendable ([String]) -> Bool) async {
        if ready(entries) { return }
        await withCheckedContinuation { waiters.append((ready, $0)) }
    }

    func wait(for entry: String) async { await wait { $0.contains(entry) } }
}
