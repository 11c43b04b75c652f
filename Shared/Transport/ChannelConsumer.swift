import Logging
import SDQCore
import SDQMessages
import Tracing

/// The one way a service takes a message of one type off a queue: decode it or send it to the
/// dead-letter queue (``MessageDisposition/reject``, never a silent delete), then run the handler
/// in a consumer span under the message's own trace, with the task id in the span and in the
/// logger's metadata and the queue wait on the span.
public struct ChannelConsumer<M: ChannelMessage>: Sendable {
    /// The service name on the span (`sdq.service`).
    public let service: String
    /// The span's name.
    public let operation: String
    public let logger: Logger

    public init(service: String, operation: String, logger: Logger) {
        self.service = service
        self.operation = operation
        self.logger = logger
    }

    /// Decodes `message` and runs `body` with it, the logger carrying its task id, and the span.
    public func handle(
        _ message: QueueMessage, _ body: (M, Logger, any Span) async -> MessageDisposition
    ) async -> MessageDisposition {
        let decoded: M
        do {
            decoded = try MessageCodec.decode(M.self, body: message.body, attributes: message.attributes)
        } catch {
            logger.error(
                "undecodable message; it goes to the dead-letter queue",
                metadata: [
                    "schema": "\(M.protoMessageName)", "message_id": "\(message.messageID)",
                    "task_id": "\(message.attributes[MessageAttribute.taskID] ?? "")", "error": "\(error)",
                ])
            return .reject
        }
        return await withSpan(operation, context: TraceCarrier.context(decoded.channelTrace), ofKind: .consumer) { span in
            span.attributes["sdq.service"] = service
            span.attributes["sdq.task_id"] = decoded.channelTaskID
            if message.sentAtMillis > 0 { span.attributes["sdq.queue_wait_ms"] = Int(EpochClock.nowMillis() - message.sentAtMillis) }
            var logger = self.logger
            logger[metadataKey: "task_id"] = "\(decoded.channelTaskID)"
            return await body(decoded, logger, span)
        }
    }
}
