import Foundation
@testable import SDQPlatform
import Testing
@testable import SDQStack

@Suite struct ArrivalSignalTests {
    @Test func anArrivalBetweenALookAndAWaitIsNotLost() async {
        let signal = ArrivalSignal()
        let seen = await signal.generation(of: "q")
        // The message arrives after the receiver looked (and found nothing) but before it waits.
        await signal.signal(queue: "q")
        let started = ContinuousClock.now
        await signal.waitForArrival(queue: "q", since: seen, timeout: .seconds(20))
        #expect(started.duration(to: .now) < .seconds(5))
    }

    @Test func aWaiterWakesOnArrivalAndOnlyForItsQueue() async throws {
        let signal = ArrivalSignal()
        let started = ContinuousClock.now
        async let woken: Void = signal.waitForArrival(queue: "a", since: await signal.generation(of: "a"), timeout: .seconds(20))
        try await Task.sleep(for: .milliseconds(100))
        await signal.signal(queue: "b")
        try await Task.sleep(for: .milliseconds(100))
        await signal.signal(queue: "a")
        await woken
        let elapsed = started.duration(to: .now)
        #expect(elapsed >= .milliseconds(200) && elapsed < .seconds(5))
    }

    @Test func aWaitEndsAtItsTimeout() async {
        let signal = ArrivalSignal()
        let started = ContinuousClock.now
        await signal.waitForArrival(queue: "q", since: await signal.generation(of: "q"), timeout: .milliseconds(150))
        #expect(started.duration(to: .now) >= .milliseconds(150))
    }
}
