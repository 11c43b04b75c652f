import Foundation
import SDQAWS
import SDQMessages

/// Webhook events and how they are queued for delivery (shared by the result-writer, which sends
/// `completed`, and the inference workers, which send `running` and `progress`). The
/// result-writer's webhook deliverer signs and sends them.
///
/// The body follows the Standard Webhooks payload shape:
/// `{"type": "task.completed", "timestamp": "2026-11-27T23:59:00.000Z", "data": {…status…}}`.
/// The `webhook-id` is derived from the task and event (`msg_<task>_completed`), so an event
/// queued twice after a crash carries the same id and a receiver can drop the repeat.
public enum WebhookEvents {
    public static let completed = "completed"
    public static let running = "running"
    public static let progress = "progress"
    /// The event names a callback may ask for.
    public static let known: [String] = [completed, running, progress]

    /// The `webhook-id` of an event; `step` tells progress events apart.
    public static func webhookID(taskID: String, event: String, step: Int? = nil) -> String {
        if let step { return "msg_\(taskID)_\(event)_\(step)" }
        return "msg_\(taskID)_\(event)"
    }

    /// The JSON body of an event.
    public static func payload(event: String, at millis: Int64, data: JSONValue) -> Data {
        let timestamp = UTCTime.internetTimestamp(Date(timeIntervalSince1970: Double(millis) / 1000), fractional: true)
        return JSONValue.object(["type": .string("task.\(event)"), "timestamp": .string(timestamp), "data": data]).serialized()
    }

    /// Queues one event for delivery (first attempt, at once).
    public static func enqueue(
        event: String, taskID: String, data: JSONValue, step: Int? = nil, trace: Sdq_V1_TraceContext? = nil,
        context: StackContext
    ) async throws(TransportError) {
        let now = EpochClock.nowMillis()
        var message = Sdq_V1_WebhookEvent()
        message.taskID = taskID
        message.event = event
        message.webhookID = webhookID(taskID: taskID, event: event, step: step)
        message.attempt = 1
        message.payload = payload(event: event, at: now, data: data)
        message.createdAtMs = now
        if let trace { message.trace = trace }
        try await send(message, context: context, delay: .zero)
    }

    /// Sends a webhook event message to the webhooks queue.
    public static func send(_ message: Sdq_V1_WebhookEvent, context: StackContext, delay: Duration) async throws(TransportError) {
        try await context.webhookEvents.send(message, delay: delay)
    }
}
