import Clocks
import Logging
import SDQPlatform
import SDQTestSupport
import Synchronization
import Testing

/// The consumer's back-off after failed receives, on a test clock: 100 ms, doubling, reset by a
/// receive that works — checked without sleeping.
@Suite struct QueueConsumerBackoffTests {
    /// A queue whose first receives fail; records when (on the test clock) each receive came.
    final class FlakyQueue: MessageQueue, Sendable {
        let name = "flaky"
        private let state = Mutex((failures: 0, calls: [Duration]()))
        let elapsed: @Sendable () -> Duration

        init(failures: Int, elapsed: @escaping @Sendable () -> Duration) {
            state.withLock { $0.failures = failures }
            self.elapsed = elapsed
        }

        var calls: [Duration] { state.withLock { $0.calls } }

        func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError) -> [QueueMessage] {
            let fail = state.withLock { state -> Bool in
                state.calls.append(elapsed())
                guard state.failures > 0 else { return false }
                state.failures -= 1
                return true
            }
            if fail { throw TransportError(code: "unavailable", message: "the queue is down") }
            // Works: park until the consumer stops (a long poll with nothing to hand over).
            try? await Task.sleep(for: .seconds(3600))
            return []
        }
        func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError) {}
        func delete(receiptHandle: String) async throws(TransportError) {}
        func delete(receiptHandles: [String]) async throws(TransportError) {}
        func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError) {}
        func depth() async throws(TransportError) -> QueueDepth { QueueDepth(visible: 0, inFlight: 0) }
        func send(batch: [OutgoingMessage]) async -> [TransportError?] { [] }
    }

    @Test func failedReceivesBackOffDoublingOnTheTestClock() async {
        let testClock = TestClock()
        let sleeps = SleepCounter()
        let clock = ServiceClock.counting(testClock, sleeps: sleeps)
        let queue = FlakyQueue(failures: 3, elapsed: clock.elapsed)
        let consumer = QueueConsumer(queue: queue, logger: Logger(label: "test"), clock: clock)
        let loop = Task { await consumer.run { _ in .delete } }
        await sleeps.wait(above: 0)  // failed once, backing off
        await testClock.advance(by: .milliseconds(100))
        await sleeps.wait(above: 1)
        await testClock.advance(by: .milliseconds(200))
        await sleeps.wait(above: 2)
        #expect(queue.calls == [.zero, .milliseconds(100), .milliseconds(300)])
        await testClock.advance(by: .milliseconds(399))
        #expect(queue.calls.count == 3, "the third back-off is 400 ms")
        await testClock.advance(by: .milliseconds(1))
        for _ in 0..<10_000 where queue.calls.count < 4 { await Task.yield() }
        #expect(queue.calls == [.zero, .milliseconds(100), .milliseconds(300), .milliseconds(700)])
        loop.cancel()
        await loop.value
    }
}
