import Synchronization
import SDQPlatform
import Testing

/// ``SendRound``: the sends of one batch's handlers leave together, grouped by queue.
@Suite struct SendRoundTests {
    /// A queue that records each `send(batch:)` and refuses bodies starting with "bad".
    final class RecordingQueue: MessageQueue, Sendable {
        let name: String
        let batches = Mutex<[[String]]>([])
        init(_ name: String) { self.name = name }

        func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError) {
            batches.withLock { $0.append([body]) }
            if body.hasPrefix("bad") { throw .storage("refused \(body)") }
        }
        func send(batch: [OutgoingMessage]) async -> [TransportError?] {
            batches.withLock { $0.append(batch.map(\.body)) }
            return batch.map { $0.body.hasPrefix("bad") ? TransportError.storage("refused \($0.body)") : nil }
        }
        func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError) -> [QueueMessage] { [] }
        func delete(receiptHandle: String) async throws(TransportError) {}
        func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError) {}
        func depth() async throws(TransportError) -> QueueDepth { QueueDepth(visible: 0, inFlight: 0) }
    }

    static func message(_ body: String) -> OutgoingMessage { OutgoingMessage(body: body, attributes: ["k": body]) }

    @Test func sendsOfOneRoundLeaveInOneBatchPerQueueAndEachSenderGetsItsOwnOutcome() async {
        let normal = RecordingQueue("normal"), high = RecordingQueue("high")
        let round = SendRound(participants: 5)
        let outcomes: [Int: Bool] = await withTaskGroup(of: (Int, Bool).self) { group in
            group.addTask { (0, await round.send(Self.message("a"), to: normal, participant: 0) == nil) }
            group.addTask { (1, await round.send(Self.message("bad-b"), to: normal, participant: 1) == nil) }
            group.addTask { (2, await round.send(Self.message("c"), to: high, participant: 2) == nil) }
            group.addTask { (3, await round.send(Self.message("d"), to: normal, participant: 3) == nil) }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(50))
                await round.leave(participant: 4)  // this handler sent nothing
                return (4, true)
            }
            var outcomes: [Int: Bool] = [:]
            for await (participant, sent) in group { outcomes[participant] = sent }
            return outcomes
        }
        #expect(outcomes == [0: true, 1: false, 2: true, 3: true, 4: true])
        #expect(normal.batches.withLock { $0.count } == 1)
        #expect(Set(normal.batches.withLock { $0[0] }) == ["a", "bad-b", "d"])
        #expect(high.batches.withLock { $0 } == [["c"]])
    }

    @Test func nothingLeavesUntilEveryParticipantHasSentOrLeft() async throws {
        let queue = RecordingQueue("normal")
        let round = SendRound(participants: 2)
        let first = Task { await round.send(Self.message("a"), to: queue, participant: 0) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(queue.batches.withLock { $0.isEmpty })
        await round.leave(participant: 1)
        #expect(await first.value == nil)
        #expect(queue.batches.withLock { $0 } == [["a"]])
    }

    @Test func aRoundOfOneSendsAtOnceAndALateOrSecondSendGoesAlone() async {
        let queue = RecordingQueue("normal")
        let round = SendRound(participants: 1)
        #expect(await round.send(Self.message("a"), to: queue, participant: 0) == nil)
        #expect(await round.send(Self.message("bad-again"), to: queue, participant: 0) != nil)
        await round.leave(participant: 0)
        #expect(queue.batches.withLock { $0 } == [["a"], ["bad-again"]])
    }
}
