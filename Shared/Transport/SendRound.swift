import SDQCore

/// Gathers the sends that the handlers of one received batch make, so that they leave in as few
/// requests as the transport allows (one `SendMessageBatch` per queue on SQS instead of one
/// `SendMessage` each).
///
/// A round has a fixed number of participants (the messages of the batch, handled concurrently).
/// Each one either sends through the round, once, or leaves it; when every participant has done
/// one or the other, the round sends what it gathered, grouped by queue, and answers each sender
/// with its own outcome. A participant that leaves after sending changes nothing, so a handler
/// can simply leave when it ends (``QueueConsumer/run(round:_:)`` does that for it). A round of one
/// participant sends at once.
public actor SendRound {
    private let participants: Int
    private var arrived: Set<Int> = []
    private var pending: [(participant: Int, queue: any MessageQueue, message: OutgoingMessage,
                           answer: CheckedContinuation<TransportError?, Never>)] = []
    private var flushed = false

    /// A round for `participants` handlers (numbered `0..<participants`).
    public init(participants: Int) {
        self.participants = participants
    }

    /// Sends `message` to `queue` with the round's other sends; returns when the round has been
    /// sent, with this message's error (nil: sent). A participant sends at most once; a second
    /// send, or one after the round went, is sent on its own.
    public func send(_ message: OutgoingMessage, to queue: any MessageQueue, participant: Int) async -> TransportError? {
        guard !flushed, !arrived.contains(participant) else {
            return await queue.send(batch: [message]).first ?? nil
        }
        return await withCheckedContinuation { continuation in
            arrived.insert(participant)
            pending.append((participant, queue, message, continuation))
            flushIfComplete()
        }
    }

    /// Marks `participant` as done with the round (it sends nothing, or already sent).
    public func leave(participant: Int) {
        arrived.insert(participant)
        flushIfComplete()
    }

    private func flushIfComplete() {
        guard !flushed, arrived.count >= participants else { return }
        flushed = true
        let gathered = pending
        pending = []
        guard !gathered.isEmpty else { return }
        // The sends happen outside the actor: grouped by queue, in the order they arrived.
        Task {
            var byQueue: [String: [Int]] = [:]
            var order: [String] = []
            for (index, entry) in gathered.enumerated() {
                if byQueue[entry.queue.name] == nil { order.append(entry.queue.name) }
                byQueue[entry.queue.name, default: []].append(index)
            }
            await withTaskGroup(of: Void.self) { group in
                for name in order {
                    let indices = byQueue[name] ?? []
                    group.addTask {
                        let queue = gathered[indices[0]].queue
                        let errors = await queue.send(batch: indices.map { gathered[$0].message })
                        for (offset, index) in indices.enumerated() {
                            gathered[index].answer.resume(returning: offset < errors.count ? errors[offset] : nil)
                        }
                    }
                }
            }
        }
    }
}

extension QueueChannel {
    /// Sends `message` with the other sends of `round` (see ``SendRound``).
    public func send(_ message: M, in round: SendRound, participant: Int) async throws(TransportError) {
        let sealed = ChannelEnvelope.seal(message)
        if let error = await round.send(
            OutgoingMessage(body: sealed.body, attributes: sealed.attributes), to: queue, participant: participant)
        {
            throw error
        }
    }
}
