@testable import InferenceService
import Synchronization
import Testing

/// The hand-over point between two jobs at the runtime, and the request order an SD WebUI
/// backend keeps.
@Suite struct RuntimeWindowTests {
    /// The worker hands the runtime its next job from this callback: once per job, when it was
    /// submitted or, never submitted, when its run ended.
    @Test func whenSubmittedRunsOnceOnSubmitOrOnClose() {
        let runs = Collected()
        let submitted = RuntimeWindow()
        submitted.whenSubmitted { runs.append("submitted") }
        #expect(runs.items.isEmpty)
        submitted.submitted(at: 1)
        submitted.submitted(at: 2)
        submitted.close()
        #expect(runs.items == ["submitted"])
        submitted.whenSubmitted { runs.append("late") }
        #expect(runs.items == ["submitted", "late"], "already submitted: at once")
        let failed = RuntimeWindow()
        failed.whenSubmitted { runs.append("closed unsubmitted") }
        failed.close()
        failed.close()
        #expect(runs.items.last == "closed unsubmitted" && runs.items.count == 3)
    }

    @Test func untilSubmittedReturnsOnceTheRuntimeHasTheJob() async {
        let window = RuntimeWindow()
        let waiter = Task { await window.untilSubmitted() }
        try? await Task.sleep(for: .milliseconds(20))
        window.submitted(at: 100)
        await waiter.value
        await window.untilSubmitted()  // already submitted: at once
        #expect(window.submittedAt == 100)
    }

    /// A run that ends before it reached the runtime (refused, failed early) still lets the next
    /// job go.
    @Test func closingWithoutSubmittingReleasesTheWaiter() async {
        let window = RuntimeWindow()
        let waiter = Task { await window.untilSubmitted() }
        try? await Task.sleep(for: .milliseconds(20))
        window.close()
        await waiter.value
        #expect(window.submittedAt == nil)
    }

    /// The worker's runtime slot is returned exactly once, when the run ends — or at once for a
    /// run that already has.
    @Test func theCloseActionRunsOnce() {
        let window = RuntimeWindow()
        let runs = Collected()
        window.whenClosed { runs.append("closed") }
        #expect(runs.items.isEmpty)
        window.close()
        window.close()
        #expect(runs.items == ["closed"])
        window.whenClosed { runs.append("late") }
        #expect(runs.items == ["closed", "late"])
    }

    @Test func theFirstTimeGivenCounts() {
        let window = RuntimeWindow()
        window.started(at: 10)
        window.started(at: 20)
        window.finished(at: 30)
        window.finished(at: 40)
        #expect(window.startedAt == 10 && window.finishedAt == 30)
    }

    /// A request sent while another is at the runtime waits behind it: it is queued, waiting
    /// until the one ahead is answered, and its start is that answer.
    @Test func aRequestSentBehindAnotherWaitsForItsAnswer() {
        let session = SDWebUISession()
        let first = session.enter()
        let second = session.enter()
        #expect(!first.queued && second.queued)
        #expect(!session.isWaiting(first) && session.isWaiting(second))
        #expect(session.leave(first, at: 500) == 0)
        #expect(!session.isWaiting(second))
        #expect(session.leave(second, at: 700) == 500, "the answer ahead of it")
        #expect(!session.enter().queued, "nothing at the runtime any more")
    }
}

/// Strings collected from synchronous callbacks.
final class Collected: Sendable {
    private let state = Mutex<[String]>([])
    func append(_ value: String) { state.withLock { $0.append(value) } }
    var items: [String] { state.withLock { $0 } }
}
