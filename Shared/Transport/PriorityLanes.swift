import SDQCore

/// A pool's two queues seen as one: the high-priority lane and the normal lane.
///
/// A receive takes from the high lane first (without waiting); then, for a wait longer than
/// ``highLaneCheck``, it long-polls both lanes at once and returns what either brings (high
/// first), so a busy worker always drains the high lane before the normal one and an idle one sees
/// a high-priority task as soon as it arrives. Receipt handles are tagged with their lane, so
/// visibility changes and deletes reach the queue the message came from.
///
/// Priority is per pool and best effort across workers: a worker already running a normal task
/// finishes it. On SQS a busy worker makes two receives per task (a short poll of each lane) and an
/// idle one four per wait (two short polls, then a long poll of each lane; the wait is 20 s).
public struct PriorityLanes: MessageQueue {
    public let high: any MessageQueue
    public let normal: any MessageQueue
    /// The longest a receive waits on the normal lane before looking at the high lane again.
    public var highLaneCheck: Duration

    public init(high: any MessageQueue, normal: any MessageQueue, highLaneCheck: Duration = .seconds(1)) {
        self.high = high
        self.normal = normal
        self.highLaneCheck = highLaneCheck
    }

    public var name: String { normal.name }

    private static let highTag = "h:"
    private static let normalTag = "n:"

    /// Sends to the normal lane (the dispatcher sends to a lane directly).
    public func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError) {
        try await normal.send(body: body, attributes: attributes, delay: delay)
    }

    public func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError)
        -> [QueueMessage]
    {
        let urgent = try await high.receive(maxMessages: maxMessages, wait: .zero, visibilityTimeout: visibilityTimeout)
        if !urgent.isEmpty { return urgent.map { Self.tagged($0, Self.highTag) } }
        if wait <= highLaneCheck {
            let regular = try await normal.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
            return regular.map { Self.tagged($0, Self.normalTag) }
        }
        // A busy lane answers a short poll at once: no long poll to cancel on the other lane.
        let ready = try await normal.receive(maxMessages: maxMessages, wait: .zero, visibilityTimeout: visibilityTimeout)
        if !ready.isEmpty { return ready.map { Self.tagged($0, Self.normalTag) } }
        return try await waitOnBoth(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
    }

    /// Long-polls both lanes at once, so an idle worker makes one request per lane per `wait` and
    /// still sees a high-priority task at once. When one lane answers, the other's poll is
    /// cancelled; whatever it received anyway is kept (or, beyond `maxMessages`, made visible
    /// again at once), so only a message SQS hands to a poll in the instant its connection closes
    /// waits for its visibility timeout.
    private func waitOnBoth(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError)
        -> [QueueMessage]
    {
        let high = self.high, normal = self.normal
        let outcome: (messages: [QueueMessage], error: TransportError?) = await withTaskGroup(
            of: Result<[QueueMessage], TransportError>.self
        ) { group in
            group.addTask {
                do throws(TransportError) {
                    return .success(try await high.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
                        .map { Self.tagged($0, Self.highTag) })
                } catch { return .failure(error) }
            }
            group.addTask {
                do throws(TransportError) {
                    return .success(try await normal.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
                        .map { Self.tagged($0, Self.normalTag) })
                } catch { return .failure(error) }
            }
            var messages: [QueueMessage] = []
            var failure: TransportError?
            for await result in group {
                switch result {
                case .success(let received): messages += received
                case .failure(let error): if failure == nil { failure = error }
                }
                if !messages.isEmpty || failure != nil { group.cancelAll() }
            }
            return (messages, failure)
        }
        // High lane first; what is beyond the caller's ask goes back to its queue at once.
        let ordered = outcome.messages.filter { $0.receiptHandle.hasPrefix(Self.highTag) }
            + outcome.messages.filter { !$0.receiptHandle.hasPrefix(Self.highTag) }
        for extra in ordered.dropFirst(max(1, maxMessages)) {
            try? await changeVisibility(receiptHandle: extra.receiptHandle, timeout: .zero)
        }
        let kept = Array(ordered.prefix(max(1, maxMessages)))
        if kept.isEmpty, let error = outcome.error, !Task.isCancelled { throw error }
        return kept
    }

    public func delete(receiptHandle: String) async throws(TransportError) {
        let (lane, receipt) = route(receiptHandle)
        try await lane.delete(receiptHandle: receipt)
    }

    public func delete(receiptHandles: [String]) async throws(TransportError) {
        var byLane: [Bool: [String]] = [:]
        for receipt in receiptHandles { byLane[receipt.hasPrefix(Self.highTag), default: []].append(route(receipt).1) }
        if let urgent = byLane[true] { try await high.delete(receiptHandles: urgent) }
        if let regular = byLane[false] { try await normal.delete(receiptHandles: regular) }
    }

    public func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError) {
        let (lane, receipt) = route(receiptHandle)
        try await lane.changeVisibility(receiptHandle: receipt, timeout: timeout)
    }

    /// Both lanes together.
    public func depth() async throws(TransportError) -> QueueDepth {
        let a = try await high.depth()
        let b = try await normal.depth()
        return QueueDepth(visible: a.visible + b.visible, inFlight: a.inFlight + b.inFlight)
    }

    private static func tagged(_ message: QueueMessage, _ tag: String) -> QueueMessage {
        var message = message
        message.receiptHandle = tag + message.receiptHandle
        return message
    }

    private func route(_ receipt: String) -> (any MessageQueue, String) {
        if receipt.hasPrefix(Self.highTag) { return (high, String(receipt.dropFirst(Self.highTag.count))) }
        if receipt.hasPrefix(Self.normalTag) { return (normal, String(receipt.dropFirst(Self.normalTag.count))) }
        return (normal, receipt)
    }
}
