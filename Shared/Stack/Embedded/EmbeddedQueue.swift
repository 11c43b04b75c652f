import Foundation
import SDQPlatform
import SQLiteNIO

/// A queue in the embedded database with SQS semantics.
///
/// - A receive makes messages invisible for the visibility timeout and counts the receive.
/// - A message whose receive count has reached the queue's `max_receive_count` is moved to the
///   dead-letter queue (with its count reset) instead of being delivered again, as SQS redrive does.
/// - Deleting needs the latest receipt handle: a worker whose visibility lapsed cannot delete the
///   message another worker now holds.
struct EmbeddedQueue: MessageQueue {
    let name: String
    let database: EmbeddedDatabase
    let signal: ArrivalSignal
    /// How often a long poll re-checks for messages sent by other processes.
    let crossProcessPollInterval: Duration
    /// The clock of visibility and delays.
    var time = EpochTime.system

    func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError) {
        try await Self.insert(
            into: name, body: body, attributes: attributes, database: database, signal: signal, delay: delay, time: time)
    }

    static func insert(
        into queue: String, body: String, attributes: [String: String], database: EmbeddedDatabase,
        signal: ArrivalSignal, delay: Duration = .zero, time: EpochTime = .system
    ) async throws(TransportError) {
        let exists = try await database.query("SELECT 1 FROM queues WHERE name = ?", [.text(queue)])
        guard !exists.isEmpty else { throw .notFound("queue \(queue)") }
        let now = time.now()
        let encoded = (try? JSONEncoder().encode(attributes)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        try await database.query(
            "INSERT INTO messages (id, queue, body, attributes, sent_at, visible_at) VALUES (?, ?, ?, ?, ?, ?)",
            [.text(UUID().uuidString.lowercased()), .text(queue), .text(body), .text(encoded), .int(now),
             .int(now + max(0, delay.milliseconds))]
        )
        if delay <= .zero { await signal.signal(queue: queue) }
    }

    func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError)
        -> [QueueMessage]
    {
        let settings = try await settings()
        let visibility = visibilityTimeout?.milliseconds ?? settings.visibilityMillis
        let deadline = ContinuousClock.now + wait
        while true {
            let generation = await signal.generation(of: name)
            let received = try await receiveOnce(
                maxMessages: max(1, min(maxMessages, 10)), visibilityMillis: visibility, settings: settings)
            if !received.isEmpty { return received }
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero || Task.isCancelled { return [] }
            await signal.waitForArrival(queue: name, since: generation, timeout: min(remaining, crossProcessPollInterval))
        }
    }

    private func receiveOnce(maxMessages: Int, visibilityMillis: Int64, settings: Settings)
        async throws(TransportError) -> [QueueMessage]
    {
        let now = time.now()
        if let dlq = settings.deadLetterQueue, settings.maxReceiveCount > 0 {
            let moved = try await database.query(
                """
                UPDATE messages SET queue = ?, receive_count = 0, receipt = NULL, visible_at = ?
                WHERE queue = ? AND visible_at <= ? AND receive_count >= ? RETURNING seq
                """,
                [.text(dlq), .int(now), .text(name), .int(now), .int(settings.maxReceiveCount)]
            )
            if !moved.isEmpty { await signal.signal(queue: dlq) }
        }
        let receipt = UUID().uuidString.lowercased()
        let rows = try await database.query(
            """
            UPDATE messages SET visible_at = ?, receive_count = receive_count + 1,
              receipt = ? || '.' || seq
            WHERE seq IN (
              SELECT seq FROM messages WHERE queue = ? AND visible_at <= ? ORDER BY seq LIMIT ?
            )
            RETURNING id, body, attributes, receipt, receive_count, sent_at, seq
            """,
            [.int(now + visibilityMillis), .text(receipt), .text(name), .int(now), .int(maxMessages)]
        )
        return rows.sorted { $0.int("seq") < $1.int("seq") }.map { row in
            let attributes = row.text("attributes").flatMap { $0.data(using: .utf8) }
                .flatMap { try? JSONDecoder().decode([String: String].self, from: $0) } ?? [:]
            return QueueMessage(
                messageID: row.text("id") ?? "", body: row.text("body") ?? "", attributes: attributes,
                receiptHandle: row.text("receipt") ?? "", receiveCount: Int(row.int("receive_count")),
                sentAtMillis: row.int("sent_at"))
        }
    }

    func delete(receiptHandle: String) async throws(TransportError) {
        try await database.query("DELETE FROM messages WHERE receipt = ?", [.text(receiptHandle)])
    }

    func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError) {
        // As SQS: only an in-flight message (still invisible) can change visibility.
        let now = time.now()
        let rows = try await database.query(
            "UPDATE messages SET visible_at = ? WHERE receipt = ? AND queue = ? AND visible_at > ? RETURNING seq",
            [.int(now + timeout.milliseconds), .text(receiptHandle), .text(name), .int(now)]
        )
        guard !rows.isEmpty else { throw .receiptExpired() }
        if timeout <= .zero { await signal.signal(queue: name) }
    }

    func depth() async throws(TransportError) -> QueueDepth {
        let now = time.now()
        let rows = try await database.query(
            """
            SELECT COALESCE(SUM(visible_at <= ?), 0) AS visible, COALESCE(SUM(visible_at > ?), 0) AS in_flight
            FROM messages WHERE queue = ?
            """,
            [.int(now), .int(now), .text(name)]
        )
        return QueueDepth(visible: Int(rows.first?.int("visible") ?? 0), inFlight: Int(rows.first?.int("in_flight") ?? 0))
    }

    struct Settings {
        var visibilityMillis: Int64
        var maxReceiveCount: Int64
        var deadLetterQueue: String?
    }

    private func settings() async throws(TransportError) -> Settings {
        let rows = try await database.query(
            "SELECT visibility_timeout_ms, max_receive_count, dead_letter_queue FROM queues WHERE name = ?",
            [.text(name)])
        guard let row = rows.first else { throw .notFound("queue \(name)") }
        return Settings(
            visibilityMillis: row.int("visibility_timeout_ms"), maxReceiveCount: row.int("max_receive_count"),
            deadLetterQueue: row.text("dead_letter_queue"))
    }
}
