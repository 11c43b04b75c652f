import Clocks
@testable import InferenceService
import SDQTestSupport
import Synchronization
import Testing

/// The worker's leases on its messages: which to extend when, which are lost, and that shutdown
/// hands every one back — as a state machine driven with plain times, and its heartbeat driven by
/// a test clock (no sleeps).
@Suite struct LeaseMachineTests {
    @Test func eachLeaseIsExtendedOneHeartbeatAfterItsLastExtension() {
        var machine = LeaseMachine(visibility: .seconds(30), heartbeat: .seconds(10))
        machine.received("a", label: "task-a", at: .zero)
        machine.received("b", label: "task-b", at: .seconds(4))
        #expect(machine.nextDeadline == .seconds(10))
        #expect(machine.tick(at: .seconds(9)).isEmpty, "nothing due yet")
        #expect(machine.tick(at: .seconds(10)) == [.extend(["a"])], "a message received a moment ago costs no request")
        machine.extended("a", at: .seconds(10))
        #expect(machine.nextDeadline == .seconds(14))
        #expect(machine.tick(at: .seconds(14)) == [.extend(["b"])])
        machine.extended("b", at: .seconds(14))
        #expect(machine.tick(at: .seconds(20)) == [.extend(["a"])])
    }

    @Test func aSettledMessageIsNoLongerExtended() {
        var machine = LeaseMachine(visibility: .seconds(30), heartbeat: .seconds(10))
        machine.received("a", label: "task-a", at: .zero)
        machine.settled("a")
        #expect(machine.tick(at: .seconds(60)).isEmpty)
        #expect(machine.nextDeadline == nil)
    }

    /// Extensions that keep failing: once the visibility confirmed last has run out the lease is
    /// lost (another worker may hold the message) and is not extended again.
    @Test func aLeaseWhoseExtensionsFailIsLostAtItsDeadline() {
        var machine = LeaseMachine(visibility: .seconds(30), heartbeat: .seconds(10))
        machine.received("a", label: "task-a", at: .zero)
        #expect(machine.tick(at: .seconds(10)) == [.extend(["a"])])  // fails: no `extended`
        #expect(machine.tick(at: .seconds(20)) == [.extend(["a"])])  // fails again
        #expect(machine.nextDeadline == .seconds(30))
        #expect(machine.tick(at: .seconds(30)) == [.lost([("a", "task-a")])])
        #expect(machine.leases.isEmpty && machine.tick(at: .seconds(40)).isEmpty)
    }

    @Test func shutdownHandsEveryLeaseBack() {
        var machine = LeaseMachine(visibility: .seconds(30), heartbeat: .seconds(10))
        machine.received("b", label: "task-b", at: .zero)
        machine.received("a", label: "task-a", at: .seconds(1))
        #expect(machine.drain() == ["a", "b"])
        #expect(machine.leases.isEmpty)
    }

    /// The heartbeat on a test clock: it sleeps until the next lease is due and extends exactly
    /// the due ones; a lease added while it sleeps is extended on time; a failing extension ends
    /// in a lost lease at its deadline.
    @Test func theHeartbeatExtendsDueLeasesOnTheTestClock() async {
        let clock = TestClock()
        let ledger = InFlightLedger(visibility: .seconds(30), heartbeat: .seconds(10), clock: WorkerClock(clock))
        let extended = Accumulator<String>()
        let lost = Collected()
        ledger.add(receipt: "a", label: "task-a")
        let heartbeat = Task {
            await InferenceWorker.heartbeat(
                ledger: ledger, clock: WorkerClock(clock), interval: .seconds(10),
                extend: { receipt in
                    await extended.append([receipt])
                    if receipt == "c" { throw CancellationError() }  // c's extensions fail
                },
                lost: { label in lost.append(label) })
        }
        func settle(_ condition: () async -> Bool) async {
            for _ in 0..<1000 where await !condition() { await Task.yield() }
        }
        await clock.advance(by: .seconds(4))
        ledger.add(receipt: "b", label: "task-b")
        ledger.add(receipt: "c", label: "task-c")
        await clock.advance(by: .seconds(6))  // t = 10
        await settle { await extended.items == ["a"] }
        #expect(await extended.items == ["a"])
        await clock.advance(by: .seconds(4))  // t = 14
        await settle { await extended.count == 3 }
        #expect(await extended.items == ["a", "b", "c"])
        await clock.advance(by: .seconds(30))  // t = 44: c (last confirmed at 4 + 30) is lost
        await settle { lost.items == ["task-c"] }
        #expect(lost.items == ["task-c"])
        #expect(!ledger.contains("c") && ledger.contains("a") && ledger.contains("b"))
        heartbeat.cancel()
        await heartbeat.value
    }
}

/// Strings collected from synchronous callbacks.
final class Collected: Sendable {
    private let state = Mutex<[String]>([])
    func append(_ value: String) { state.withLock { $0.append(value) } }
    var items: [String] { state.withLock { $0 } }
}
