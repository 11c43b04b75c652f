import SDQMessages
import SDQTransport

extension StackContext {
    /// Where tasks are submitted (the tasks topic, fanned out to the dispatch queue).
    public var submissions: TopicChannel<Sdq_V1_GenerationTask> { TopicChannel(transport.topic(named: names.tasksTopic)) }
    /// Where results go (the result-writer's queue).
    public var results: QueueChannel<Sdq_V1_TaskResult> { QueueChannel(transport.queue(named: names.resultsQueue)) }
    /// Where webhook events are queued for delivery.
    public var webhookEvents: QueueChannel<Sdq_V1_WebhookEvent> { QueueChannel(transport.queue(named: names.webhooksQueue)) }
    /// A pool's lane for dispatched tasks.
    public func lane(pool: String, high: Bool) -> QueueChannel<Sdq_V1_GenerationTask> {
        QueueChannel(transport.queue(named: high ? names.highPriorityQueue(pool) : names.poolQueue(pool)))
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
