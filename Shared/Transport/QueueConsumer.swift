import Logging
import SDQCore
import ServiceLifecycle

/// What a message handler decided.
public enum MessageDisposition: Sendable, Equatable {
    /// Done: delete the message.
    case delete
    /// Try again later: make it visible again after this delay.
    case retry(after: Duration)
    /// Cannot ever be processed: make it visible at once so the queue's redrive moves it to the
    /// dead-letter queue after its remaining receives. Never deleted silently.
    case reject
}

/// A long-polling consumer loop: receive, hand each message to a handler, act on the disposition.
/// A receive error backs off instead of ending the loop. On graceful shutdown it lets a pending
/// long poll finish (cancelling it would not stop SQS from handing over messages, which would
/// then stay invisible for a whole visibility timeout), handles what it got, and stops.
/// Cancellation stops it at once.
public struct QueueConsumer: Sendable {
    public let queue: any MessageQueue
    public let logger: Logger
    public var batchSize: Int
    public var wait: Duration
    public var visibilityTimeout: Duration?
    /// The clock of the receive back-off (a test clock in tests).
    public var clock: ServiceClock

    public init(
        queue: any MessageQueue, logger: Logger, batchSize: Int = 10, wait: Duration = .seconds(20),
        visibilityTimeout: Duration? = nil, clock: ServiceClock = .continuous
    ) {
        self.clock = clock
        self.queue = queue
        self.logger = logger
        self.batchSize = batchSize
        self.wait = wait
        self.visibilityTimeout = visibilityTimeout
    }

    /// Runs the loop until cancelled. Messages of one batch are handled concurrently.
    public func run(_ handle: @escaping @Sendable (QueueMessage) async -> MessageDisposition) async {
        await run(round: { message, _, _ in await handle(message) })
    }

    /// Runs the loop until cancelled, the handlers of one batch sharing a ``SendRound`` (each is
    /// given the round and its participant number, and leaves the round when it returns), so
    /// what they send leaves together.
    public func run(round handle: @escaping @Sendable (QueueMessage, SendRound, Int) async -> MessageDisposition) async {
        var backoff = Duration.milliseconds(100)
        let queue = self.queue, batchSize = self.batchSize, wait = self.wait, visibilityTimeout = self.visibilityTimeout
        let clock = self.clock
        defer { logger.debug("consumer stopped", metadata: ["queue": "\(queue.name)"]) }
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let messages: [QueueMessage]
            do {
                messages = try await queue.receive(maxMessages: batchSize, wait: wait, visibilityTimeout: visibilityTimeout)
                backoff = .milliseconds(100)
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                logger.warning("receive failed", metadata: ["queue": "\(queue.name)", "error": "\(error)"])
                do { try await clock.sleepFor(backoff) } catch { return }
                backoff = min(backoff * 2, .seconds(10))
                continue
            }
            if !messages.isEmpty { logger.trace("received", metadata: ["queue": "\(queue.name)", "count": "\(messages.count)"]) }
            // Messages of a batch are handled concurrently; the finished ones are deleted together
            // (one `DeleteMessageBatch` on SQS), the others settled at once.
            let round = SendRound(participants: messages.count)
            let done: [String] = await withTaskGroup(of: String?.self) { group in
                for (participant, message) in messages.enumerated() {
                    group.addTask {
                        let disposition = await handle(message, round, participant)
                        await round.leave(participant: participant)
                        if disposition == .delete { return message.receiptHandle }
                        await self.settle(message, disposition: disposition)
                        return nil
                    }
                }
                var done: [String] = []
                for await receipt in group { if let receipt { done.append(receipt) } }
                return done
            }
            if !done.isEmpty {
                do { try await queue.delete(receiptHandles: done) } catch {
                    // They come back after their visibility timeout: at-least-once, never lost.
                    logger.warning("deleting handled messages failed", metadata: ["queue": "\(queue.name)", "error": "\(error)"])
                }
            }
        }
    }

    /// Acts on one message's disposition now (delete, delay or reject).
    public func settle(_ message: QueueMessage, disposition: MessageDisposition) async {
        do {
            switch disposition {
            case .delete:
                try await queue.delete(receiptHandle: message.receiptHandle)
            case .retry(let delay):
                try await queue.changeVisibility(receiptHandle: message.receiptHandle, timeout: delay)
            case .reject:
                logger.error(
                    "message rejected; it goes to the dead-letter queue",
                    metadata: ["queue": "\(queue.name)", "message_id": "\(message.messageID)",
                               "receive_count": "\(message.receiveCount)"])
                try await queue.changeVisibility(receiptHandle: message.receiptHandle, timeout: .zero)
            }
        } catch {
            // The message comes back after its visibility timeout: at-least-once, never lost.
            logger.warning("settling a message failed", metadata: ["queue": "\(queue.name)", "error": "\(error)"])
        }
    }
}
