import Foundation
import SDQPlatform
import SQLiteNIO

/// Task records in the embedded database. A record is JSON with its status and a version beside
/// it; updates are optimistic (`UPDATE … WHERE version = ?`), retried on a lost race, and applied
/// only while the status is one the caller allows.
struct EmbeddedTaskStore: TaskStore {
    let database: EmbeddedDatabase

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    private func encode(_ record: TaskRecord) throws(TransportError) -> String {
        guard let data = try? Self.encoder.encode(record), let text = String(data: data, encoding: .utf8) else {
            throw .storage("cannot encode task \(record.id)")
        }
        return text
    }

    private func decode(_ row: SQLiteRow) throws(TransportError) -> TaskRecord {
        guard let text = row.text("record"), let data = text.data(using: .utf8),
            let record = try? JSONDecoder().decode(TaskRecord.self, from: data)
        else { throw .storage("corrupt task record") }
        return record
    }

    func create(_ record: TaskRecord) async throws(TransportError) -> CreateOutcome {
        // An expired task no longer holds its id or idempotency key.
        try await database.query(
            "DELETE FROM tasks WHERE expires_at <= ? AND (id = ? OR (idempotency_key IS NOT NULL AND idempotency_key = ?))",
            [.int(EpochClock.nowMillis()), .text(record.id), .optionalText(record.idempotencyKey)])
        let rows = try await database.query(
            """
            INSERT INTO tasks (id, idempotency_key, status, version, record, expires_at)
            VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT DO NOTHING RETURNING id
            """,
            [.text(record.id), .optionalText(record.idempotencyKey), .text(record.status.rawValue),
             .text(try encode(record)), .int(record.expiresAt)])
        if !rows.isEmpty { return .created(record) }
        // Lost to an existing row: the same id or the same idempotency key.
        let existing = try await database.query(
            "SELECT record FROM tasks WHERE id = ? OR (idempotency_key IS NOT NULL AND idempotency_key = ?)",
            [.text(record.id), .optionalText(record.idempotencyKey)])
        guard let row = existing.first else { throw .storage("task \(record.id) vanished during create") }
        return .existing(try decode(row))
    }

    func get(id: String) async throws(TransportError) -> TaskRecord? {
        let rows = try await database.query(
            "SELECT record FROM tasks WHERE id = ? AND expires_at > ?", [.text(id), .int(EpochClock.nowMillis())])
        guard let row = rows.first else { return nil }
        return try decode(row)
    }

    func update(
        id: String, ifStatusIn allowed: Set<TaskStatus>, _ mutate: @Sendable (inout TaskRecord) -> Void
    ) async throws(TransportError) -> UpdateOutcome {
        try await readModifyWrite(id: id, permits: { allowed.contains($0.status) }, mutate)
    }

    func apply(_ event: TaskEvent, to id: String) async throws(TransportError) -> UpdateOutcome {
        let transition = TaskLifecycle.transition(for: event)
        return try await readModifyWrite(id: id, permits: transition.permits) { TaskLifecycle.apply(event, to: &$0) }
    }

    /// Reads the row, applies `mutate` if `permits` allows, and writes it back on condition that
    /// nobody wrote it meanwhile (`version`), retrying a lost race; a change that changes nothing
    /// writes nothing.
    private func readModifyWrite(
        id: String, permits: (TaskRecord) -> Bool, _ mutate: (inout TaskRecord) -> Void
    ) async throws(TransportError) -> UpdateOutcome {
        for _ in 0..<100 {
            let rows = try await database.query("SELECT record, version FROM tasks WHERE id = ?", [.text(id)])
            guard let row = rows.first else { return .notFound }
            let current = try decode(row)
            guard permits(current) else { return .conflict(current) }
            var updated = current
            mutate(&updated)
            updated.id = current.id
            if updated == current { return .applied(current) }
            let applied = try await database.query(
                "UPDATE tasks SET record = ?, status = ?, version = version + 1, expires_at = ? WHERE id = ? AND version = ? RETURNING id",
                [.text(try encode(updated)), .text(updated.status.rawValue), .int(updated.expiresAt), .text(id),
                 .int(row.int("version"))])
            if !applied.isEmpty { return .applied(updated) }
        }
        throw .storage("task \(id) is updated too often to apply a change")
    }
}
