import Foundation
import SDQMessages
import SDQPlatform

extension APIHandler {
    /// The dead-letter queues of the stack's topology, each with the queue it catches for.
    var deadLetterQueues: [(dlq: String, source: String)] {
        context.topology.queues.compactMap { spec in spec.deadLetterQueue.map { ($0, spec.name) } }
    }

    /// `GET /v1/dead-letters` (operator keys only): each dead-letter queue with its depth and a
    /// sample of up to ten messages (task, tenant, pool, kind, when sent). Looking is a receive
    /// with a short visibility that is handed back at once, so a look never moves a message.
    func deadLetters(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        try allow(request, ["GET"])
        guard tenant.role == .operator else {
            throw APIError(status: 403, code: "operator_only", message: "dead letters need an operator key")
        }
        try Self.refuseUnknownParameters(request, known: ["queue"], of: "dead letters")
        let wanted = try deadLetterQueue(named: request.query["queue"])
        var queues: [JSONValue] = []
        for (dlq, source) in deadLetterQueues where wanted == nil || wanted == dlq {
            let queue = context.transport.queue(named: dlq)
            let depth: QueueDepth
            let sample: [QueueMessage]
            do {
                depth = try await queue.depth()
                sample = depth.visible > 0 ? try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(5)) : []
            } catch {
                throw .unavailable("cannot read \(dlq): \(error)")
            }
            for message in sample { try? await queue.changeVisibility(receiptHandle: message.receiptHandle, timeout: .zero) }
            let messages = sample.map { Self.describe($0, from: source) }
            queues.append(
                .object([
                    "queue": .string(dlq), "source": .string(source), "depth": .number(Double(depth.visible + depth.inFlight)),
                    "messages": .array(messages),
                ]))
        }
        return .json(200, JSONValue.object(["queues": .array(queues)]).serialized())
    }

    /// `POST /v1/dead-letters/redrive` `{"queue": NAME, "max": N}` (operator keys only): moves up
    /// to `max` (default 100, at most 1,000) messages from a dead-letter queue back to the queue it
    /// catches for. Each is sent before it is deleted, so a failure midway duplicates a message at
    /// worst, which every consumer already treats as a redelivery.
    func redriveDeadLetters(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        try allow(request, ["POST"])
        guard tenant.role == .operator else {
            throw APIError(status: 403, code: "operator_only", message: "re-driving dead letters needs an operator key")
        }
        let body: JSONValue
        do { body = try JSONValue.parse(request.body) } catch { throw APIError.unparsable(error) }
        guard case .object(let fields) = body else { throw .invalid("body", "the body must be a JSON object") }
        if let unknown = fields.keys.sorted().first(where: { !["queue", "max"].contains($0) }) {
            throw .invalid(unknown, "unknown field \(unknown)")
        }
        guard let name = fields["queue"]?.stringValue else { throw .invalid("queue", "queue must name a dead-letter queue") }
        guard let dlq = try deadLetterQueue(named: name), let source = deadLetterQueues.first(where: { $0.dlq == dlq })?.source else {
            throw .invalid("queue", "queue must name a dead-letter queue")
        }
        var limit = 100
        if let value = fields["max"] {
            guard let number = value.numberValue, number == number.rounded(), (1...1000).contains(number) else {
                throw .invalid("max", "max must be an integer from 1 to 1000")
            }
            limit = Int(number)
        }
        let from = context.transport.queue(named: dlq), to = context.transport.queue(named: source)
        var moved = 0
        do {
            while moved < limit {
                let batch = try await from.receive(maxMessages: min(10, limit - moved), wait: .zero, visibilityTimeout: .seconds(60))
                if batch.isEmpty { break }
                let errors = await to.send(batch: batch.map { OutgoingMessage(body: $0.body, attributes: $0.attributes) })
                let sent = zip(batch, errors).filter { $0.1 == nil }.map(\.0)
                try await from.delete(receiptHandles: sent.map(\.receiptHandle))
                moved += sent.count
                if sent.count < batch.count { break }
            }
        } catch {
            throw .unavailable("re-drive of \(dlq) stopped after \(moved): \(error)")
        }
        logger.notice("dead letters re-driven", metadata: ["queue": "\(dlq)", "to": "\(source)", "count": "\(moved)"])
        await audit("dead_letters.redrive", by: tenant, target: dlq, detail: "\(moved) to \(source)", request: request)
        return .json(200, JSONValue.object(["queue": .string(dlq), "source": .string(source), "redriven": .number(Double(moved))]).serialized())
    }

    /// `name` when it is one of the stack's dead-letter queues (nil for nil); a 400 otherwise.
    private func deadLetterQueue(named name: String?) throws(APIError) -> String? {
        guard let name else { return nil }
        guard deadLetterQueues.contains(where: { $0.dlq == name }) else {
            throw .invalid("queue", "no dead-letter queue named \(name)")
        }
        return name
    }

    /// What a dead letter is: its task, tenant and pool as far as its attributes and body say.
    static func describe(_ message: QueueMessage, from source: String) -> JSONValue {
        var kind = "unknown", tenant: String?, pool = message.attributes[MessageAttribute.pool]
        let schema = message.attributes[MessageAttribute.schema]
        if schema == Sdq_V1_GenerationTask.protoMessageName,
            let task = try? MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes)
        {
            kind = "generation_task"
            tenant = task.tenant.isEmpty ? nil : task.tenant
            pool = pool ?? (task.pool.isEmpty ? nil : task.pool)
        } else if schema == Sdq_V1_TaskResult.protoMessageName {
            kind = "task_result"
        } else if schema == Sdq_V1_WebhookEvent.protoMessageName {
            kind = "webhook"
        }
        return .object([
            "message_id": .string(message.messageID),
            "task_id": message.attributes[MessageAttribute.taskID].map { .string($0) } ?? .null,
            "tenant": tenant.map { .string($0) } ?? .null, "pool": pool.map { .string($0) } ?? .null, "kind": .string(kind),
            "received_count": .number(Double(message.receiveCount)),
            "sent_at": message.sentAtMillis > 0 ? .number(Double(message.sentAtMillis)) : .null,
        ])
    }
}
