import Foundation
import SDQAWS
import SDQCore
import SDQMessages
import SwiftProtobuf

/// A protobuf message that travels on sdq's queues and topics: it names its task and carries its
/// trace context, and says which routing attributes it needs.
public protocol ChannelMessage: SwiftProtobuf.Message, Sendable {
    /// The task the message is about (the `sdq-task-id` attribute).
    var channelTaskID: String { get }
    /// The W3C trace context the message carries.
    var channelTrace: Sdq_V1_TraceContext { get set }
    /// Attributes for routing without decoding (pool, priority); none by default.
    var routingAttributes: [String: String] { get }
}

extension ChannelMessage {
    public var routingAttributes: [String: String] { [:] }
}

extension Sdq_V1_GenerationTask: ChannelMessage {
    public var channelTaskID: String { id }
    public var channelTrace: Sdq_V1_TraceContext {
        get { trace }
        set { trace = newValue }
    }
    public var routingAttributes: [String: String] {
        var attributes = [MessageAttribute.priority: priority == .high ? "high" : "normal"]
        if !pool.isEmpty { attributes[MessageAttribute.pool] = pool }
        return attributes
    }
}

extension Sdq_V1_TaskResult: ChannelMessage {
    public var channelTaskID: String { id }
    public var channelTrace: Sdq_V1_TraceContext {
        get { trace }
        set { trace = newValue }
    }
    public var routingAttributes: [String: String] { pool.isEmpty ? [:] : [MessageAttribute.pool: pool] }
}

extension Sdq_V1_WebhookEvent: ChannelMessage {
    public var channelTaskID: String { taskID }
    public var channelTrace: Sdq_V1_TraceContext {
        get { trace }
        set { trace = newValue }
    }
}

/// The one place a message's queue body and attributes are built: every send carries the task id,
/// the routing attributes and the W3C `traceparent` (the message's own, else the current span's,
/// else a fresh unsampled one, so even an untraced deployment's logs and X-Ray headers join up);
/// the AWS transport adds SQS's `AWSTraceHeader` from it.
public enum ChannelEnvelope {
    /// The body and attributes of `message`, with its trace context filled in.
    public static func seal<M: ChannelMessage>(_ message: M) -> (message: M, body: String, attributes: [String: String]) {
        var message = message
        if message.channelTrace.traceparent.isEmpty {
            let current = TraceCarrier.current()
            message.channelTrace = current.traceparent.isEmpty ? freshTrace() : current
        }
        var attributes = message.routingAttributes
        attributes[MessageAttribute.taskID] = message.channelTaskID
        attributes[MessageAttribute.traceparent] = message.channelTrace.traceparent
        if !message.channelTrace.tracestate.isEmpty { attributes[MessageAttribute.tracestate] = message.channelTrace.tracestate }
        let encoded = MessageCodec.encode(message, attributes: attributes)
        return (message, encoded.body, encoded.attributes)
    }

    /// A new root trace context, not sampled (`-00`): ids for correlation without a trace.
    public static func freshTrace() -> Sdq_V1_TraceContext {
        var generator = SystemRandomNumberGenerator()
        func hex(_ bytes: Int) -> String {
            Hex.lowercase((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        var trace = Sdq_V1_TraceContext()
        trace.traceparent = "00-\(hex(16))-\(hex(8))-00"
        return trace
    }
}

/// A typed queue: sends one message type, sealed by ``ChannelEnvelope``.
public struct QueueChannel<M: ChannelMessage>: Sendable {
    public let queue: any MessageQueue

    public init(_ queue: any MessageQueue) { self.queue = queue }

    /// Sends `message`, invisible for `delay`.
    public func send(_ message: M, delay: Duration = .zero) async throws(TransportError) {
        let sealed = ChannelEnvelope.seal(message)
        try await queue.send(body: sealed.body, attributes: sealed.attributes, delay: delay)
    }
}

/// A typed topic: publishes one message type, sealed by ``ChannelEnvelope``.
public struct TopicChannel<M: ChannelMessage>: Sendable {
    public let topic: any Topic

    public init(_ topic: any Topic) { self.topic = topic }

    public func publish(_ message: M) async throws(TransportError) {
        let sealed = ChannelEnvelope.seal(message)
        try await topic.publish(body: sealed.body, attributes: sealed.attributes)
    }
}

extension Sdq_V1_TaskResult {
    /// A result that ends `taskID` as `cancelled` (sent by the API on a cancel, and by whoever
    /// meets a cancelled task whose ending was not announced).
    public static func cancelled(taskID: String, message: String = "cancelled by the client") -> Sdq_V1_TaskResult {
        var result = Sdq_V1_TaskResult()
        result.id = taskID
        result.outcome = .cancelled
        result.error.code = "cancelled"
        result.error.message = message
        return result
    }

    /// A result that fails `taskID` with `code` before any worker ran it.
    public static func failure(taskID: String, code: String, message: String, pool: String = "") -> Sdq_V1_TaskResult {
        var result = Sdq_V1_TaskResult()
        result.id = taskID
        result.outcome = .failed
        result.pool = pool
        result.error.code = code
        result.error.message = message
        return result
    }
}
