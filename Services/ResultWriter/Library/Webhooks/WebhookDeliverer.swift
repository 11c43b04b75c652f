import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import SDQMessages
import SDQPlatform
import Tracing

/// Delivers webhook events from the webhooks queue: signs them (``WebhookSigner``), posts them,
/// records every attempt on the task, and retries failures through the queue.
///
/// - A 2xx answer is success. Any other answer, a timeout or a connection failure is retried:
///   the event is sent to the queue again with `attempt + 1` after the configured delay
///   (`webhooks.retry_delays_seconds`, by default over about 16 hours); a wait longer than the
///   queue's 15-minute delay hops through the queue (`not_before_ms`). No process sleeps.
/// - After the last attempt the `completed` delivery is `failed`; the task stays as it ended.
/// - `running` and `progress` events get a few attempts, and are dropped once the task ended.
/// - The destination is resolved and checked again for every attempt (``OutboundURLPolicy``), so
///   a name that later resolves to a private, loopback or link-local address (DNS rebinding) is
///   refused; a refused destination fails the delivery at once. Plain-http deliveries connect
///   to the checked address itself (sending the original `Host`), so nothing resolves in
///   between; https deliveries verify the server certificate for the original name, which an
///   internal address cannot present. Redirects are not followed.
public struct WebhookDeliverer: Sendable {
    public let context: StackContext
    public let policy: OutboundURLPolicy
    public let logger: Logger
    let http: HTTPClient

    public init(context: StackContext, policy: OutboundURLPolicy, logger: Logger, http: HTTPClient = .outbound) {
        self.context = context
        self.policy = policy
        self.logger = logger
        self.http = http
    }

    var settings: WebhookSettings { context.pools.webhooks }

    /// Handles one webhooks-queue message.
    public func deliver(_ message: QueueMessage) async -> MessageDisposition {
        await ChannelConsumer<Sdq_V1_WebhookEvent>(service: "result-writer", operation: "webhook-event", logger: logger)
            .handle(message) { event, _, _ in await deliver(event) }
    }

    private func deliver(_ event: Sdq_V1_WebhookEvent) async -> MessageDisposition {
        let now = EpochClock.nowMillis()
        if event.notBeforeMs > now {
            // A wait longer than one queue delay: hop again.
            let remaining = Duration.milliseconds(event.notBeforeMs - now)
            do { try await WebhookEvents.send(event, context: context, delay: min(remaining, PriorityLanes.maxDelay)) } catch {
                return .retry(after: .seconds(5))
            }
            return .delete
        }
        let record: TaskRecord?
        do { record = try await context.transport.tasks.get(id: event.taskID) } catch { return .retry(after: .seconds(5)) }
        guard let record, let callback = record.callback else { return .delete }
        let terminalEvent = event.event == WebhookEvents.completed
        if !terminalEvent, record.status.isTerminal { return .delete }  // stale: the task has ended
        if terminalEvent, let status = record.webhook?.status, status == .succeeded || status == .failed { return .delete }

        let attempt = await withSpan("webhook \(event.event)", context: TraceCarrier.context(event.trace), ofKind: .client) { span in
            span.attributes["sdq.service"] = "result-writer"
            span.attributes["sdq.task_id"] = event.taskID
            span.attributes["sdq.webhook.attempt"] = Int(event.attempt)
            let attempt = await post(event, to: callback)
            if let code = attempt.record.statusCode { span.attributes["http.response.status_code"] = code }
            if let error = attempt.error { span.setStatus(SpanStatus(code: .error, message: error)) }
            return attempt
        }
        let lastAttempt = Int(event.attempt) >= (terminalEvent ? settings.maxAttempts : max(1, settings.transientEventAttempts))
        let retry = attempt.error != nil && !attempt.permanent && !lastAttempt
        if retry {
            var next = event
            next.attempt += 1
            let delay = settings.delay(after: Int(event.attempt))
            next.notBeforeMs = delay > PriorityLanes.maxDelay ? EpochClock.nowMillis() + delay.milliseconds : 0
            do { try await WebhookEvents.send(next, context: context, delay: min(delay, PriorityLanes.maxDelay)) } catch {
                return .retry(after: .seconds(5))  // the attempt repeats: at-least-once
            }
        }
        let outcome: WebhookDelivery? = terminalEvent ? (attempt.error == nil ? .succeeded : (retry ? .pending : .failed)) : nil
        let recorded = attempt.record
        do {
            _ = try await context.transport.tasks.apply(.webhookAttempted(recorded, delivery: outcome), to: record.id)
        } catch {
            logger.warning("cannot record a webhook attempt", metadata: ["task_id": "\(record.id)", "error": "\(error)"])
        }
        SDQMetrics.webhook(event: event.event, outcome: attempt.error == nil ? "delivered" : retry ? "retrying" : "failed")
        logger.info(
            "webhook attempt", metadata: [
                "task_id": "\(record.id)", "event": "\(event.event)", "attempt": "\(event.attempt)",
                "status_code": "\(attempt.record.statusCode.map(String.init) ?? "none")",
                "outcome": "\(attempt.error == nil ? "delivered" : retry ? "retrying" : "failed")",
            ])
        return .delete
    }

    /// A webhook event that could not be processed (a store outage outlasting its receives):
    /// its `completed` delivery is marked failed, so the task shows it.
    public func deadLettered(_ message: QueueMessage) async -> MessageDisposition {
        guard let taskID = message.attributes[MessageAttribute.taskID], !taskID.isEmpty else { return .delete }
        let event = try? MessageCodec.decode(Sdq_V1_WebhookEvent.self, body: message.body, attributes: message.attributes)
        guard event == nil || event?.event == WebhookEvents.completed else { return .delete }
        do {
            _ = try await context.transport.tasks.apply(.webhookDeadLettered, to: taskID)
            return .delete
        } catch {
            return .retry(after: .seconds(30))
        }
    }

    struct Attempt {
        var record: WebhookAttempt
        var error: String? { record.error }
        /// Retrying cannot help (the destination is refused).
        var permanent: Bool
    }

    /// One signed POST of `event` to the callback.
    func post(_ event: Sdq_V1_WebhookEvent, to callback: CallbackSpec) async -> Attempt {
        let started = EpochClock.nowMillis()
        func attempt(status: Int?, error: String?, permanent: Bool = false) -> Attempt {
            Attempt(
                record: WebhookAttempt(
                    event: event.event, attempt: Int(event.attempt), at: started, statusCode: status, error: error,
                    durationMs: EpochClock.nowMillis() - started),
                permanent: permanent)
        }
        guard let url = URL(string: callback.url) else { return attempt(status: nil, error: "refused: not a URL", permanent: true) }
        let pinned: String?
        switch await policy.vet(url) {
        case .refused(let reason): return attempt(status: nil, error: "refused: \(reason)", permanent: true)
        case .unresolved(let error): return attempt(status: nil, error: "failed: \(error)")
        case .allowed(let address): pinned = address
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "sdq-webhooks")
        let timestamp = EpochClock.nowMillis() / 1000
        let headers: [(String, String)]
        if let secret = callback.secret, let signer = try? WebhookSigner(secret: secret) {
            headers = signer.headers(id: event.webhookID, timestamp: timestamp, body: event.payload)
        } else {
            headers = [("webhook-id", event.webhookID), ("webhook-timestamp", String(timestamp))]
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: event.payload))
        let timeout = TimeAmount.milliseconds(Int64(settings.timeoutSeconds * 1000))
        do {
            // Connected to the checked address; the name stays in the URL, Host and TLS SNI.
            let status = try await OutboundHTTP.execute(request, url: url, address: pinned, timeout: timeout, shared: http) { response in
                _ = try? await response.body.collect(upTo: 64 * 1024)
                return Int(response.status.code)
            }
            if (200..<300).contains(status) { return attempt(status: status, error: nil) }
            return attempt(status: status, error: "answered \(status)")
        } catch {
            let text = "\(error)"
            return attempt(status: nil, error: text.contains("deadlineExceeded") || text.contains("readTimeout") ? "timed out" : "failed: \(text)")
        }
    }
}
