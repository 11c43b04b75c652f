@testable import InferenceService
import SDQPlatform
import Testing

/// The worker's leases on its messages: which to extend when, which are lost, and that shutdown
/// hands every one back — as a state machine driven with plain times (the heartbeat that drives
/// it on a test clock is in ``WorkerDriverTests``).
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
}
