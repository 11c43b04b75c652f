import SDQPlatform
import Testing

/// The permits the worker's pipeline counts with: what one missed `signal` or a lost waiter would
/// do (stall the worker) shows here first.
@Suite struct AsyncSemaphoreTests {
    @Test func permitsAreTakenWithoutWaitingUntilNoneIsLeft() async {
        let semaphore = AsyncSemaphore(value: 2)
        #expect(await semaphore.wait())
        #expect(await semaphore.wait())
        let third = Task { await semaphore.wait() }
        try? await Task.sleep(for: .milliseconds(20))
        semaphore.signal()
        #expect(await third.value, "the waiter got the returned permit")
    }

    @Test func waitersAreWokenInTheOrderTheyCame() async {
        let semaphore = AsyncSemaphore(value: 0)
        let order = Accumulated()
        var waiters: [Task<Void, Never>] = []
        for index in 0..<3 {
            waiters.append(Task {
                _ = await semaphore.wait()
                await order.append(index)
            })
            // Each waiter is queued before the next starts.
            try? await Task.sleep(for: .milliseconds(20))
        }
        for _ in 0..<3 {
            semaphore.signal()
            try? await Task.sleep(for: .milliseconds(5))
        }
        for waiter in waiters { await waiter.value }
        #expect(await order.values == [0, 1, 2])
    }

    /// A cancelled waiter answers false and takes no permit: the next signal goes to whoever waits
    /// next, or stays for the next `wait`.
    @Test func aCancelledWaiterTakesNoPermit() async {
        let semaphore = AsyncSemaphore(value: 0)
        let cancelled = Task { await semaphore.wait() }
        try? await Task.sleep(for: .milliseconds(20))
        cancelled.cancel()
        #expect(await cancelled.value == false)
        semaphore.signal()
        #expect(await semaphore.wait(), "the permit was kept for the next wait")
    }
}

/// Values appended from several tasks.
actor Accumulated {
    private(set) var values: [Int] = []
    func append(_ value: Int) { values.append(value) }
}
