import Foundation
import SDQPlatform
import Logging
import NIOCore
import SQLiteNIO
import Synchronization

/// The embedded transport's SQLite database (one file under `SDQ_DATA_DIR`).
///
/// Concurrency: one connection per process, and every state change is a single SQL statement
/// (`UPDATE … RETURNING`), so statements from concurrent tasks or from other processes cannot
/// interleave inside a change. WAL mode lets readers and one writer work side by side.
///
/// Ownership: this object is the connection's only owner and closes it exactly once, either in
/// `close()` or, for a database dropped without it, in `deinit`. SQLiteNIO's close is not
/// idempotent (its first close sets the handle to NULL, a second passes NULL to
/// `sqlite3_update_hook` and crashes), so `closed` records the one close and both paths go
/// through `takeClose()`.
final class EmbeddedDatabase: Sendable {
    let connection: SQLiteConnection
    let path: String
    private let closed = Mutex(false)

    private init(connection: SQLiteConnection, path: String) {
        self.connection = connection
        self.path = path
    }

    static func open(path: String, logger: Logger) async throws(TransportError) -> EmbeddedDatabase {
        do {
            let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
            let database = EmbeddedDatabase(connection: connection, path: path)
            // Several processes may share the file (API instances beside `sdq up`): a writer
            // waits for another's write instead of failing with SQLITE_BUSY.
            _ = try await connection.query("PRAGMA busy_timeout=10000")
            _ = try await connection.query("PRAGMA journal_mode=WAL")
            _ = try await connection.query("PRAGMA synchronous=NORMAL")
            for statement in schema {
                _ = try await connection.query(statement)
            }
            return database
        } catch let error as TransportError {
            throw error
        } catch {
            throw .storage("cannot open \(path): \(error)")
        }
    }

    /// Runs one statement and returns its rows.
    @discardableResult
    func query(_ sql: String, _ binds: [SQLiteData] = []) async throws(TransportError) -> [SQLiteRow] {
        do {
            return try await connection.query(sql, binds)
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Closes the connection; later calls (and `deinit`) do nothing.
    func close() async {
        guard takeClose() else { return }
        try? await connection.close()
    }

    /// True for the one caller that may close the connection.
    private func takeClose() -> Bool {
        closed.withLock { closed in
            defer { closed = true }
            return !closed
        }
    }

    deinit {
        // Dropped without close(): close on the connection's thread pool. The pending close keeps
        // the connection alive until it is done. No other reference exists, so nothing can race it.
        guard takeClose() else { return }
        _ = connection.close() as EventLoopFuture<Void>
    }

    private static let schema = [
        """
        CREATE TABLE IF NOT EXISTS queues (
          name TEXT PRIMARY KEY,
          visibility_timeout_ms INTEGER NOT NULL,
          max_receive_count INTEGER NOT NULL,
          dead_letter_queue TEXT
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS messages (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          id TEXT NOT NULL UNIQUE,
          queue TEXT NOT NULL,
          body TEXT NOT NULL,
          attributes TEXT NOT NULL,
          sent_at INTEGER NOT NULL,
          visible_at INTEGER NOT NULL,
          receive_count INTEGER NOT NULL DEFAULT 0,
          receipt TEXT
        )
        """,
        "CREATE INDEX IF NOT EXISTS messages_ready ON messages(queue, visible_at, seq)",
        "CREATE INDEX IF NOT EXISTS messages_receipt ON messages(receipt)",
        """
        CREATE TABLE IF NOT EXISTS subscriptions (
          topic TEXT NOT NULL,
          queue TEXT NOT NULL,
          filter_policy TEXT,
          PRIMARY KEY (topic, queue)
        )
        """,
        "CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY)",
        """
        CREATE TABLE IF NOT EXISTS tasks (
          id TEXT PRIMARY KEY,
          idempotency_key TEXT UNIQUE,
          status TEXT NOT NULL,
          version INTEGER NOT NULL,
          record TEXT NOT NULL,
          expires_at INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS objects (
          key TEXT PRIMARY KEY,
          content_type TEXT NOT NULL,
          size INTEGER NOT NULL,
          created_at INTEGER NOT NULL
        )
        """,
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        // The task list: one tenant's tasks newest first (EmbeddedTaskStore.list), also for
        // tables made before it existed.
        """
        CREATE INDEX IF NOT EXISTS tasks_by_tenant ON tasks(
          coalesce(json_extract(record, '$.tenant'), 'anonymous'),
          coalesce(json_extract(record, '$.timings.submittedAt'), 0), id)
        """,
        // Audit records, newest first by time (EmbeddedTaskStore.audit).
        "CREATE TABLE IF NOT EXISTS audit (id TEXT PRIMARY KEY, at INTEGER NOT NULL, record TEXT NOT NULL, expires_at INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at, id)",
        // The model registry (EmbeddedTaskStore+Models).
        "CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, record TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS workers (pool TEXT NOT NULL, worker TEXT NOT NULL, record TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (pool, worker))",
        // Per-tenant quotas: the in-flight count of the tasks holding slots, and the submission
        // rate's theoretical arrival time (SubmissionRate). The triggers move the count in the
        // same statement as the task's status, so a slot comes back exactly once.
        """
        CREATE TABLE IF NOT EXISTS tenant_quotas (
          tenant TEXT PRIMARY KEY,
          in_flight INTEGER NOT NULL DEFAULT 0,
          rate_tat INTEGER
        )
        """,
        """
        CREATE TRIGGER IF NOT EXISTS task_slot_taken AFTER INSERT ON tasks
        WHEN json_extract(NEW.record, '$.inFlightSlot') IS NOT NULL AND NEW.status IN ('queued', 'dispatched', 'running')
        BEGIN
          INSERT OR IGNORE INTO tenant_quotas (tenant) VALUES (json_extract(NEW.record, '$.inFlightSlot'));
          UPDATE tenant_quotas SET in_flight = in_flight + 1 WHERE tenant = json_extract(NEW.record, '$.inFlightSlot');
        END
        """,
        """
        CREATE TRIGGER IF NOT EXISTS task_slot_returned AFTER UPDATE OF status ON tasks
        WHEN json_extract(NEW.record, '$.inFlightSlot') IS NOT NULL
          AND OLD.status IN ('queued', 'dispatched', 'running') AND NEW.status NOT IN ('queued', 'dispatched', 'running')
        BEGIN
          UPDATE tenant_quotas SET in_flight = max(0, in_flight - 1) WHERE tenant = json_extract(NEW.record, '$.inFlightSlot');
        END
        """,
        """
        CREATE TRIGGER IF NOT EXISTS task_slot_retaken AFTER UPDATE OF status ON tasks
        WHEN json_extract(NEW.record, '$.inFlightSlot') IS NOT NULL
          AND OLD.status NOT IN ('queued', 'dispatched', 'running') AND NEW.status IN ('queued', 'dispatched', 'running')
        BEGIN
          INSERT OR IGNORE INTO tenant_quotas (tenant) VALUES (json_extract(NEW.record, '$.inFlightSlot'));
          UPDATE tenant_quotas SET in_flight = in_flight + 1 WHERE tenant = json_extract(NEW.record, '$.inFlightSlot');
        END
        """,
        """
        CREATE TRIGGER IF NOT EXISTS task_slot_dropped AFTER DELETE ON tasks
        WHEN json_extract(OLD.record, '$.inFlightSlot') IS NOT NULL AND OLD.status IN ('queued', 'dispatched', 'running')
        BEGIN
          UPDATE tenant_quotas SET in_flight = max(0, in_flight - 1) WHERE tenant = json_extract(OLD.record, '$.inFlightSlot');
        END
        """,
    ]
}

extension SQLiteData {
    static func int(_ value: some BinaryInteger) -> SQLiteData { .integer(numericCast(value)) }
    static func optionalText(_ value: String?) -> SQLiteData { value.map { .text($0) } ?? .null }
}

extension SQLiteRow {
    func int(_ name: String) -> Int64 { column(name)?.integer.map { Int64($0) } ?? 0 }
    func text(_ name: String) -> String? { column(name)?.string }
}
