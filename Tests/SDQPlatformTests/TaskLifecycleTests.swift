import Foundation
import Synchronization
import SDQPlatform
import SDQTestSupport
import Testing

/// The task lifecycle's whole transition table, without I/O: every event from every status,
/// every duplicate and every out-of-order delivery.
@Suite struct TaskLifecycleTests {
    static let claim = AnnouncementClaim(token: "writer-1", at: 1_000_000, manifestKey: "results/t/manifest.json")
    static let image = ImageRecord(key: "outputs/t/image-0.png", contentType: "image/png", width: 8, height: 8, seed: 7, sha256: "ab", size: 10)
    static let succeeded = TaskConclusion(status: .succeeded, images: [image], worker: "w1", pool: "default", attempts: 1, finishedAt: 900)
    static let failed = TaskConclusion(
        status: .failed, error: TaskFailure(code: "runtime_error", message: "boom"), worker: "w1", finishedAt: 900)

    /// Every event sdq sends, with the statuses it may happen in.
    static let table: [(TaskEvent, Set<TaskStatus>)] = [
        (.dispatched(pool: "p", model: "m", at: 10, queuePosition: 3), [.queued]),
        (.dispatchRecorded(pool: "p", model: "m", at: 10, queuePosition: 3), [.running]),
        (.started(worker: "w1", at: 20), [.queued, .dispatched, .running]),
        (.progressed(0.5), [.queued, .dispatched, .running]),
        (.finished(succeeded, claim: claim), [.queued, .dispatched, .running]),
        (.finished(failed, claim: claim), [.queued, .dispatched, .running]),
        (.cancelled(at: 30, message: "cancelled by the client"), [.queued, .dispatched, .running]),
        (.submitFailed, [.queued]),
        (.claimAnnouncement(claim), [.succeeded, .failed, .cancelled]),
        (.webhookDeadLettered, Set(TaskStatus.allCases)),
    ]

    @Test(arguments: TaskStatus.allCases)
    func eachEventHappensOnlyFromItsStatuses(_ status: TaskStatus) {
        for (event, allowed) in Self.table {
            var record = makeRecord(id: "t", status: status)
            let before = record
            let applied = TaskLifecycle.apply(event, to: &record)
            #expect(applied == allowed.contains(status), "\(event) from \(status)")
            if !applied { #expect(record == before, "a refused \(event) changed the record") }
            #expect(TaskLifecycle.transition(for: event).allowedFrom == allowed)
        }
    }

    @Test func aTaskGoesThroughItsLifeOnce() {
        var record = makeRecord(id: "t")
        #expect(TaskLifecycle.apply(.dispatched(pool: "p", model: "m", at: 10, queuePosition: 2), to: &record))
        #expect(record.status == .dispatched && record.pool == "p" && record.timings.dispatchedAt == 10 && record.queuePositionAtDispatch == 2)
        #expect(TaskLifecycle.apply(.started(worker: "w1", at: 20), to: &record))
        #expect(record.status == .running && record.worker == "w1" && record.timings.startedAt == 20)
        #expect(TaskLifecycle.apply(.progressed(0.4), to: &record))
        #expect(record.progress == 0.4)
        #expect(TaskLifecycle.apply(.finished(Self.succeeded, claim: Self.claim), to: &record))
        #expect(record.status == .succeeded && record.progress == 1 && record.images == [Self.image])
        #expect(record.timings.finishedAt == 900 && record.manifestKey == Self.claim.manifestKey)
        #expect(record.announceClaim == "writer-1" && record.announceClaimAt == Self.claim.at && record.error == nil)
        // The holder announces; nobody else can.
        var other = record
        #expect(!TaskLifecycle.apply(.announced(token: "writer-2", at: 1_000_100, webhookNotRequested: false), to: &other))
        #expect(TaskLifecycle.apply(.announced(token: "writer-1", at: 1_000_100, webhookNotRequested: false), to: &record))
        #expect(record.announcedAt == 1_000_100 && record.announceClaim == nil)
        // Nothing reopens it.
        for event in [TaskEvent.started(worker: "w2", at: 50), .progressed(0.1), .finished(Self.failed, claim: Self.claim),
                      .cancelled(at: 60, message: "late"), .resubmitted, .claimAnnouncement(Self.claim)] {
            var copy = record
            #expect(!TaskLifecycle.apply(event, to: &copy), "\(event) after the end")
        }
    }

    @Test func duplicatesAndLateDeliveriesChangeNothing() {
        // A duplicate dispatch message: the first dispatch stands.
        var record = makeRecord(id: "t")
        TaskLifecycle.apply(.dispatched(pool: "p", model: "m", at: 10, queuePosition: 2), to: &record)
        var copy = record
        #expect(!TaskLifecycle.apply(.dispatched(pool: "q", model: "m2", at: 99, queuePosition: 9), to: &copy))
        #expect(copy == record)
        // The dispatcher records a dispatch before its lane send: the message whose dispatch was
        // recorded may send again (its send may not have happened); another message may not.
        var byMessage = makeRecord(id: "t")
        #expect(TaskLifecycle.apply(.dispatched(pool: "p", model: "m", at: 10, queuePosition: 2, message: "m1"), to: &byMessage))
        #expect(byMessage.status == .dispatched && byMessage.dispatchMessage == "m1")
        #expect(TaskLifecycle.afterDispatch(.applied(byMessage)) == .sendToLane)
        var again = byMessage
        #expect(TaskLifecycle.apply(.dispatched(pool: "p", model: "m", at: 12, queuePosition: 7, message: "m1"), to: &again))
        #expect(again.timings.dispatchedAt == 10 && again.queuePositionAtDispatch == 2)
        var duplicate = byMessage
        #expect(!TaskLifecycle.apply(.dispatched(pool: "p", model: "m", at: 12, queuePosition: 7, message: "m2"), to: &duplicate))
        #expect(duplicate == byMessage)
        #expect(TaskLifecycle.afterDispatch(.conflict(byMessage)) == .none)
        #expect(TaskLifecycle.afterDispatch(.notFound) == .none)
        // Once running, not even the recorded message sends again.
        var started = byMessage
        TaskLifecycle.apply(.started(worker: "w1", at: 20), to: &started)
        var lateDispatch = started
        #expect(!TaskLifecycle.apply(.dispatched(pool: "p", model: "m", at: 12, queuePosition: 7, message: "m1"), to: &lateDispatch))
        #expect(TaskLifecycle.afterDispatch(.conflict(started)) == .none)
        // A dispatch recorded after a fast worker's start (a dispatcher of the earlier release,
        // which sent first) keeps the status and the first times.
        var running = makeRecord(id: "t", status: .queued)
        TaskLifecycle.apply(.started(worker: "w1", at: 20), to: &running)
        #expect(TaskLifecycle.apply(.dispatchRecorded(pool: "p", model: "m", at: 10, queuePosition: 1), to: &running))
        #expect(running.status == .running && running.timings.dispatchedAt == 10)
        #expect(TaskLifecycle.apply(.dispatchRecorded(pool: "p", model: "m", at: 15, queuePosition: 5), to: &running))
        #expect(running.timings.dispatchedAt == 10 && running.queuePositionAtDispatch == 1)
        // A second result: refused, and the first writer's claim stands while fresh.
        var ended = makeRecord(id: "t", status: .running)
        TaskLifecycle.apply(.finished(Self.succeeded, claim: Self.claim), to: &ended)
        let second = AnnouncementClaim(token: "writer-2", at: Self.claim.at + 1_000, manifestKey: Self.claim.manifestKey)
        var copy2 = ended
        #expect(!TaskLifecycle.apply(.finished(Self.failed, claim: second), to: &copy2))
        #expect(copy2 == ended)
        #expect(TaskLifecycle.afterClaim(.conflict(ended), claim: second) == .retryLater)
        #expect(!TaskLifecycle.apply(.claimAnnouncement(second), to: &copy2))
        // ...and is taken over once stale.
        let late = AnnouncementClaim(token: "writer-3", at: Self.claim.at + TaskLifecycle.claimLifetimeMillis + 1, manifestKey: Self.claim.manifestKey)
        #expect(TaskLifecycle.afterClaim(.conflict(ended), claim: late) == .claimAnnouncement(ended))
        #expect(TaskLifecycle.apply(.claimAnnouncement(late), to: &copy2))
        #expect(copy2.announceClaim == "writer-3")
        #expect(TaskLifecycle.afterClaim(.applied(copy2), claim: late) == .announce(copy2))
        // Once announced, a late result is done with.
        TaskLifecycle.apply(.announced(token: "writer-3", at: 5, webhookNotRequested: false), to: &copy2)
        #expect(TaskLifecycle.afterClaim(.conflict(copy2), claim: late) == .none)
        #expect(TaskLifecycle.afterClaim(.notFound, claim: late) == .none)
    }

    @Test func aCancelEndsThroughTheResultPathAndIsForwardedUntilAnnounced() {
        var record = makeRecord(id: "t", status: .dispatched)
        #expect(TaskLifecycle.apply(.cancelled(at: 30, message: "cancelled by the client"), to: &record))
        #expect(record.status == .cancelled && record.cancelRequested && record.error?.code == "cancelled" && record.timings.finishedAt == 30)
        // A worker or the dispatcher meeting it forwards a cancelled result while unannounced.
        #expect(TaskLifecycle.onSkipped(record) == .forwardCancel(record))
        #expect(TaskLifecycle.afterDispatch(.conflict(record)) == .forwardCancel(record))
        // The cancel's result finds it ended and claims the announcement.
        #expect(TaskLifecycle.afterClaim(.conflict(record), claim: Self.claim) == .claimAnnouncement(record))
        #expect(TaskLifecycle.apply(.claimAnnouncement(Self.claim), to: &record))
        #expect(TaskLifecycle.apply(.announced(token: Self.claim.token, at: 40, webhookNotRequested: false), to: &record))
        #expect(TaskLifecycle.onSkipped(record) == .none)
        // A succeeded or failed task is never forwarded as cancelled.
        var done = makeRecord(id: "u", status: .running)
        TaskLifecycle.apply(.finished(Self.failed, claim: Self.claim), to: &done)
        #expect(TaskLifecycle.onSkipped(done) == .none)
    }

    @Test func onlyAFailedPublishReopensATask() {
        var record = makeRecord(id: "t")
        #expect(TaskLifecycle.apply(.submitFailed, to: &record))
        #expect(record.status == .failed && record.error?.code == TaskLifecycle.submitFailedCode)
        #expect(TaskLifecycle.apply(.resubmitted, to: &record))
        #expect(record.status == .queued && record.error == nil)
        var other = makeRecord(id: "u", status: .running)
        TaskLifecycle.apply(.finished(Self.failed, claim: Self.claim), to: &other)
        #expect(!TaskLifecycle.apply(.resubmitted, to: &other))
        #expect(other.status == .failed)
    }

    @Test func releasingAClaimNeedsToHoldIt() {
        var record = makeRecord(id: "t", status: .running)
        TaskLifecycle.apply(.finished(Self.succeeded, claim: Self.claim), to: &record)
        var copy = record
        #expect(!TaskLifecycle.apply(.releaseAnnouncement(token: "someone-else"), to: &copy))
        #expect(TaskLifecycle.apply(.releaseAnnouncement(token: Self.claim.token), to: &copy))
        #expect(copy.announceClaim == nil && copy.announceClaimAt == nil)
        // Released: claimable at once by the next attempt.
        let next = AnnouncementClaim(token: "writer-2", at: Self.claim.at + 10, manifestKey: Self.claim.manifestKey)
        #expect(TaskLifecycle.afterClaim(.conflict(copy), claim: next) == .claimAnnouncement(copy))
    }

    @Test func webhookBookkeepingKeepsASuccess() {
        var record = makeRecord(id: "t", status: .succeeded)
        record.callback = CallbackSpec(url: "https://example.com/hook", events: ["running"])
        let attempt = WebhookAttempt(event: "completed", attempt: 1, at: 5, statusCode: 200, error: nil, durationMs: 3)
        #expect(TaskLifecycle.apply(.webhookAttempted(attempt, delivery: .succeeded), to: &record))
        #expect(TaskLifecycle.apply(.webhookAttempted(attempt, delivery: .failed), to: &record))
        #expect(record.webhook?.status == .succeeded && record.webhook?.attempts.count == 2)
        #expect(TaskLifecycle.apply(.webhookDeadLettered, to: &record))
        #expect(record.webhook?.status == .succeeded)
        // A callback that did not ask for `completed` reads `not_requested` once announced.
        var other = makeRecord(id: "u", status: .running)
        other.callback = CallbackSpec(url: "https://example.com/hook", events: ["running"])
        TaskLifecycle.apply(.finished(Self.succeeded, claim: Self.claim), to: &other)
        #expect(TaskLifecycle.transition(for: .announced(token: "writer-1", at: 9, webhookNotRequested: true)).fields == nil)
        #expect(TaskLifecycle.apply(.announced(token: "writer-1", at: 9, webhookNotRequested: true), to: &other))
        #expect(other.webhook?.status == .notRequested && other.announcedAt == 9)
    }

    @Test func everyBlindTransitionWritesWhatTheRecordPathWrites() {
        // The AWS store applies `fields` without reading; the embedded store applies the event to
        // the record. Both must give the same record.
        for status in TaskStatus.allCases {
            for (event, _) in Self.table {
                let transition = TaskLifecycle.transition(for: event)
                guard let fields = transition.fields else { continue }
                var viaEvent = makeRecord(id: "t", status: status)
                var viaFields = viaEvent
                guard TaskLifecycle.apply(event, to: &viaEvent) else { continue }
                for field in fields { field.apply(to: &viaFields) }
                #expect(viaEvent == viaFields, "\(event) from \(status)")
            }
        }
    }
}

/// Concurrent readers of one queue's depth share one read; a reading serves for its age.
@Suite struct QueueDepthCacheTests {
    final class CountingQueue: MessageQueue, @unchecked Sendable {
        let name = "counted"
        let reads = Mutex(0)
        func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError) {}
        func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError) -> [QueueMessage] { [] }
        func delete(receiptHandle: String) async throws(TransportError) {}
        func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError) {}
        func depth() async throws(TransportError) -> QueueDepth {
            let count = reads.withLock { value -> Int in
                value += 1
                return value
            }
            try? await Task.sleep(for: .milliseconds(50))
            return QueueDepth(visible: count, inFlight: 0)
        }
    }

    @Test func concurrentReadersShareOneReadAndAReadingServesItsAge() async throws {
        let queue = CountingQueue()
        let clock = ManualClock()
        let cache = QueueDepthCache(maxAge: .milliseconds(300), clock: clock.service)
        let depths = await withTaskGroup(of: QueueDepth?.self) { group in
            for _ in 0..<20 { group.addTask { await cache.depth(of: queue) } }
            var all: [QueueDepth?] = []
            for await depth in group { all.append(depth) }
            return all
        }
        #expect(depths.count == 20 && depths.allSatisfy { $0 == QueueDepth(visible: 1, inFlight: 0) })
        #expect(queue.reads.withLock { $0 } == 1)
        clock.advance(by: .milliseconds(300))
        #expect(await cache.depth(of: queue) == QueueDepth(visible: 1, inFlight: 0), "a reading serves for its whole age")
        clock.advance(by: .milliseconds(1))
        #expect(await cache.depth(of: queue) == QueueDepth(visible: 2, inFlight: 0))
    }
}
