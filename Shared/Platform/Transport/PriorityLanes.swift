/// A pool's two queues seen as one: the high-priority lane and the normal lane.
///
/// A receive takes from the high lane first (without waiting), then long-polls the normal lane for
/// at most ``highLaneCheck``, so an idle worker notices a high-priority task within about that
/// time and a busy worker always drains the high lane before the normal one. Receipt handles are
/// tagged with their lane, so visibility changes and deletes reach the queue the message came from.
///
/// Priority is per pool and best effort across workers: a worker already running a normal task
/// finishes it. On SQS an idle worker makes about two receives per `highLaneCheck` (cheap; idle
/// pools scale to zero anyway).
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
        var received: [QueueMessage] = []
        if urgent.isEmpty {
            let regular = try await normal.receive(
                maxMessages: maxMessages, wait: min(wait, highLaneCheck), visibilityTimeout: visibilityTimeout)
            for message in regular { received.append(Self.tagged(message, Self.normalTag)) }
        } else {
            for message in urgent { received.append(Self.tagged(message, Self.highTag)) }
        }
        return received
    }

    public func delete(receiptHandle: String) async throws(TransportError) {
        let (lane, receipt) = route(receiptHandle)
        try await lane.delete(receiptHandle: receipt)
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

extension StackContext {
    /// The queues a pool's workers consume, high-priority lane first.
    public func workerQueue(pool: String, highLaneCheck: Duration = .seconds(1)) -> PriorityLanes {
        PriorityLanes(
            high: transport.queue(named: names.highPriorityQueue(pool)), normal: transport.queue(named: names.poolQueue(pool)),
            highLaneCheck: highLaneCheck)
    }
}
