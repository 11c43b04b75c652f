import Foundation
import SDQPlatform
import SQLiteNIO

/// Task records in the embedded database. A record is JSON with its status and a version beside
/// it; updates are optimistic (`UPDATE … WHERE version = ?`), retried on a lost race, and applied
/// only while the status is one the caller allows.
///
/// Every change made through this store wakes the event streams of the task in this process at
/// once (`changes`, keyed by task id); changes by other processes are seen on the streams' next
/// read.
struct EmbeddedTaskStore: TaskStore {
    let database: EmbeddedDatabase
    let changes: ArrivalSignal

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

    func create(_ record: TaskRecord, inFlightLimit: Int?) async throws(TransportError) -> CreateOutcome {
        // An expired task no longer holds its id or idempotency key.
        try await database.query(
            "DELETE FROM tasks WHERE expires_at <= ? AND (id = ? OR (idempotency_key IS NOT NULL AND idempotency_key = ?))",
            [.int(EpochClock.nowMillis()), .text(record.id), .optionalText(record.idempotencyKey)])
        var binds: [SQLiteData] = [
            .text(record.id), .optionalText(record.idempotencyKey), .text(record.status.rawValue), .text(try encode(record)),
            .int(record.expiresAt),
        ]
        // With a limit, the insert itself checks the count (the trigger task_slot_taken then
        // takes the slot): one statement, so API processes sharing the file cannot both pass.
        var condition = "1"
        if let slot = record.inFlightSlot, let inFlightLimit {
            condition = "coalesce((SELECT in_flight FROM tenant_quotas WHERE tenant = ?), 0) < ?"
            binds += [.text(slot), .int(inFlightLimit)]
        }
        let rows = try await database.query(
            """
            INSERT INTO tasks (id, idempotency_key, status, version, record, expires_at)
            SELECT ?, ?, ?, 1, ?, ? WHERE \(condition) ON CONFLICT DO NOTHING RETURNING id
            """, binds)
        if !rows.isEmpty {
            await changes.signal(queue: record.id)
            return .created(record)
        }
        // Lost to an existing row (the same id or the same idempotency key), or refused.
        let existing = try await database.query(
            "SELECT record FROM tasks WHERE id = ? OR (idempotency_key IS NOT NULL AND idempotency_key = ?)",
            [.text(record.id), .optionalText(record.idempotencyKey)])
        guard let row = existing.first else {
            if record.inFlightSlot != nil, let inFlightLimit { return .inFlightLimitReached(limit: inFlightLimit) }
            throw .storage("task \(record.id) vanished during create")
        }
        return .existing(try decode(row))
    }

    func takeSubmission(tenant: String, rate: SubmissionRate, now: Int64) async throws(TransportError) -> RateDecision {
        for _ in 0..<100 {
            let rows = try await database.query("SELECT rate_tat FROM tenant_quotas WHERE tenant = ?", [.text(tenant)])
            let stored = rows.first.flatMap { $0.column("rate_tat")?.integer }.map(Int64.init)
            let decision = rate.decide(arrivalTime: stored, now: now)
            guard decision.allowed else { return decision }
            // Written only if nobody wrote it since it was read (the same value, or no row).
            let written = try await database.query(
                """
                INSERT INTO tenant_quotas (tenant, rate_tat) VALUES (?, ?)
                ON CONFLICT (tenant) DO UPDATE SET rate_tat = excluded.rate_tat WHERE tenant_quotas.rate_tat IS ?
                RETURNING tenant
                """, [.text(tenant), .int(decision.arrivalTime), stored.map { .int($0) } ?? .null])
            if !written.isEmpty { return decision }
        }
        throw .storage("the submission rate of \(tenant) is contended")
    }

    func appendAudit(_ record: AuditRecord) async throws(TransportError) {
        guard let data = try? Self.encoder.encode(record) else { throw .storage("cannot encode audit record \(record.id)") }
        try await database.query(
            "INSERT OR IGNORE INTO audit (id, at, record, expires_at) VALUES (?, ?, ?, ?)",
            [.text(record.id), .int(record.at), .text(String(decoding: data, as: UTF8.self)), .int(record.expiresAt)])
    }

    func audit(_ query: AuditQuery) async throws(TransportError) -> (records: [AuditRecord], more: Bool) {
        var sql = "SELECT record FROM audit WHERE expires_at > ?"
        var binds: [SQLiteData] = [.int(EpochClock.nowMillis())]
        if let since = query.since {
            sql += " AND at >= ?"
            binds.append(.int(since))
        }
        if let until = query.until {
            sql += " AND at < ?"
            binds.append(.int(until))
        }
        if let after = query.after {
            sql += " AND (at < ? OR (at = ? AND id < ?))"
            binds += [.int(after.at), .int(after.at), .text(after.id)]
        }
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        binds.append(.int(query.limit + 1))
        let rows = try await database.query(sql, binds)
        let records = rows.prefix(query.limit).compactMap { row in
            row.text("record").flatMap { try? JSONDecoder().decode(AuditRecord.self, from: Data($0.utf8)) }
        }
        return (records, rows.count > query.limit)
    }

    func recordHeartbeat(_ heartbeat: WorkerHeartbeat) async throws(TransportError) {
        guard let data = try? Self.encoder.encode(heartbeat) else { throw .storage("cannot encode the heartbeat of \(heartbeat.worker)") }
        try await database.query(
            "INSERT OR REPLACE INTO workers (pool, worker, record, expires_at) VALUES (?, ?, ?, ?)",
            [.text(heartbeat.pool), .text(heartbeat.worker), .text(String(decoding: data, as: UTF8.self)), .int(heartbeat.expiresAt)])
    }

    func heartbeats(pool: String?, goneWithin: Int64) async throws(TransportError) -> [WorkerHeartbeat] {
        var sql = "SELECT record FROM workers WHERE expires_at > ?"
        var binds: [SQLiteData] = [.int(EpochClock.nowMillis() - max(0, goneWithin))]
        if let pool {
            sql += " AND pool = ?"
            binds.append(.text(pool))
        }
        let rows = try await database.query(sql + " ORDER BY pool, worker", binds)
        return rows.compactMap { row in row.text("record").flatMap { try? JSONDecoder().decode(WorkerHeartbeat.self, from: Data($0.utf8)) } }
    }

    func inFlight(tenant: String) async throws(TransportError) -> Int {
        let rows = try await database.query("SELECT in_flight FROM tenant_quotas WHERE tenant = ?", [.text(tenant)])
        return rows.first.flatMap { $0.column("in_flight")?.integer } ?? 0
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

    func changeGeneration(of id: String) async -> UInt64 {
        await changes.generation(of: id)
    }

    func waitForChange(of id: String, since generation: UInt64, timeout: Duration) async {
        await changes.waitForArrival(queue: id, since: generation, timeout: timeout)
    }

    /// A page of a tenant's tasks from the `tasks_by_tenant` index (tenant, submitted time, id);
    /// the status and pool filters read on along the index until the page is full.
    func list(_ query: TaskListQuery) async throws(TransportError) -> TaskPage {
        let (sql, binds) = Self.listStatement(query, now: EpochClock.nowMillis())
        let rows = try await database.query(sql, binds)
        var records: [TaskRecord] = []
        for row in rows.prefix(query.limit) { records.append(try decode(row)) }
        let next = rows.count > query.limit ? records.last.map(TaskListPosition.init) : nil
        return TaskPage(records: records, next: next)
    }

    /// How SQLite runs a list query (`EXPLAIN QUERY PLAN`): the proof that it walks the index.
    func listPlan(_ query: TaskListQuery) async throws(TransportError) -> [String] {
        let (sql, binds) = Self.listStatement(query, now: EpochClock.nowMillis())
        return try await database.query("EXPLAIN QUERY PLAN " + sql, binds).compactMap { $0.text("detail") }
    }

    /// The list query: one page plus one row (to know whether another page follows).
    static func listStatement(_ query: TaskListQuery, now: Int64) -> (String, [SQLiteData]) {
        var sql = "SELECT record FROM tasks WHERE \(Self.tenantColumn) = ? AND expires_at > ?"
        var binds: [SQLiteData] = [.text(query.tenant), .int(now)]
        if let since = query.since {
            sql += " AND \(Self.submittedColumn) >= ?"
            binds.append(.int(since))
        }
        if let until = query.until {
            sql += " AND \(Self.submittedColumn) < ?"
            binds.append(.int(until))
        }
        if let after = query.after {
            sql += " AND (\(Self.submittedColumn) < ? OR (\(Self.submittedColumn) = ? AND id < ?))"
            binds += [.int(after.submittedAt), .int(after.submittedAt), .text(after.id)]
        }
        if let status = query.status {
            sql += " AND status = ?"
            binds.append(.text(status.rawValue))
        }
        if let pool = query.pool {
            sql += " AND json_extract(record, '$.pool') = ?"
            binds.append(.text(pool))
        }
        sql += " ORDER BY \(Self.submittedColumn) DESC, id DESC LIMIT ?"
        binds.append(.int(query.limit + 1))
        return (sql, binds)
    }

    /// The indexed expressions of the task list (`tasks_by_tenant` in the schema).
    static let tenantColumn = "coalesce(json_extract(record, '$.tenant'), 'anonymous')"
    static let submittedColumn = "coalesce(json_extract(record, '$.timings.submittedAt'), 0)"

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
            if !applied.isEmpty {
                await changes.signal(queue: id)
                if updated.status.isTerminal { await changes.forget(queue: id) }
                return .applied(updated)
            }
        }
        throw .storage("task \(id) is updated too often to apply a change")
    }
}
