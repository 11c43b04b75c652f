import SDQTransport

/// A pool's queues as pool health reads them: both lanes and their dead-letter queues.
public struct PoolQueueDepths: Sendable {
    /// The normal lane's depth, when it could be read.
    public var normal: QueueDepth?
    /// Visible messages on both lanes.
    public var backlog: Int
    /// Messages (visible and in flight) in both lanes' dead-letter queues.
    public var deadLetters: Int
}

extension StackContext {
    /// Reads a pool's lanes and dead-letter queues through `depth` (the API's cache, or the queue
    /// itself); a queue that cannot be read counts as empty.
    public func queueDepths(pool: String, depth: (any MessageQueue) async -> QueueDepth?) async -> PoolQueueDepths {
        let lanes = workerQueue(pool: pool)
        let normal = await depth(lanes.normal)
        var result = PoolQueueDepths(normal: normal, backlog: normal?.visible ?? 0, deadLetters: 0)
        result.backlog += await depth(lanes.high)?.visible ?? 0
        for lane in [lanes.high, lanes.normal] {
            if let dead = await depth(transport.queue(named: names.deadLetterQueue(of: lane.name))) {
                result.deadLetters += dead.visible + dead.inFlight
            }
        }
        return result
    }
}
