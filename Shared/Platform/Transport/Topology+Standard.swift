import SDQTransport

extension Topology {
    /// The standard stack for a pool configuration: tasks topic → dispatch queue, two queues per
    /// pool (high-priority lane and normal), the results queue, the webhooks queue, each with its dead-letter queue, and the notifications topic.
    public static func standard(names: ResourceNames, pools: PoolConfiguration) -> Topology {
        let limits = pools.queues
        func withDLQ(_ name: String, visibility: Duration) -> [QueueSpec] {
            let dlq = names.deadLetterQueue(of: name)
            return [
                QueueSpec(
                    name: name, visibilityTimeout: visibility,
                    maxReceiveCount: limits.maxReceiveCount, deadLetterQueue: dlq),
                QueueSpec(name: dlq, visibilityTimeout: .seconds(30), maxReceiveCount: 0, deadLetterQueue: nil),
            ]
        }
        var queues = withDLQ(names.dispatchQueue, visibility: .seconds(30))
        for pool in pools.pools {
            for queue in names.workerQueues(pool.name) {
                queues += withDLQ(queue, visibility: limits.workerVisibilityTimeout)
            }
        }
        queues += withDLQ(names.resultsQueue, visibility: .seconds(30))
        queues += withDLQ(names.webhooksQueue, visibility: .seconds(60))
        return Topology(
            queues: queues,
            topics: [names.tasksTopic, names.notificationsTopic],
            subscriptions: [SubscriptionSpec(topic: names.tasksTopic, queue: names.dispatchQueue)],
            storage: StorageSpec(
                bucket: names.bucket, table: names.tasksTable,
                expirationDays: max(1, (pools.limits.taskTTLSeconds + 86_399) / 86_400))
        )
    }
}
