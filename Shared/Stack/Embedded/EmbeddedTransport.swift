import Foundation
import SDQPlatform
import Logging

/// The embedded transport: one SQLite file (`SDQ_DATA_DIR/sdq.sqlite`) and an object folder beside
/// it (`SDQ_DATA_DIR/objects`), durable across restarts and shareable by processes on one machine.
/// It is the default when no AWS configuration is given.
public final class EmbeddedTransport: Transport {
    private let database: EmbeddedDatabase
    private let signal = ArrivalSignal()
    /// The data directory.
    public let directory: URL
    public let objects: any ObjectStore
    public let tasks: any TaskStore
    /// How often a long poll looks for messages sent by another process.
    public let crossProcessPollInterval: Duration
    /// The clock of the queues' visibility timeouts and delays (the system's but in tests).
    public let time: EpochTime

    private init(database: EmbeddedDatabase, directory: URL, bucket: String, pollInterval: Duration, time: EpochTime) {
        self.time = time
        self.database = database
        self.directory = directory
        self.objects = EmbeddedObjectStore(
            bucket: bucket, root: directory.appendingPathComponent("objects", isDirectory: true), database: database)
        self.tasks = EmbeddedTaskStore(database: database, changes: ArrivalSignal())
        self.crossProcessPollInterval = pollInterval
    }

    /// Opens (creating if needed) the embedded store in `directory` for the stack's bucket.
    public static func open(
        directory: String, names: ResourceNames, logger: Logger = Logger(label: "sdq.embedded"),
        crossProcessPollInterval: Duration = .milliseconds(200), time: EpochTime = .system
    ) async throws(TransportError) -> EmbeddedTransport {
        let url = URL(fileURLWithPath: directory, isDirectory: true).standardizedFileURL
        // The database holds the object-URL signing key and webhook secrets: a folder sdq creates,
        // or one that already is sdq's (it holds the database or the object folder), is made the
        // owner's only (0700); any other existing folder (`/tmp`, a shared volume) is left as it
        // is, with a warning when others can enter it. The database and its journals are 0600.
        let databasePath = url.appendingPathComponent("sdq.sqlite").path
        let manager = FileManager.default
        do {
            let existed = manager.fileExists(atPath: url.path)
            let ours = !existed || manager.fileExists(atPath: databasePath)
                || manager.fileExists(atPath: url.appendingPathComponent("objects").path)
            try manager.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let mode = ((try? manager.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int) ?? 0) & 0o777
            if ours, mode != 0o700, chmod(url.path, 0o700) != 0 {
                logger.warning("cannot make the data folder private", metadata: ["path": "\(url.path)", "errno": "\(errno)"])
            } else if !ours, mode & 0o077 != 0 {
                logger.warning(
                    "the data folder is open to other users; the database inside is 0600",
                    metadata: ["path": "\(url.path)", "mode": "\(String(mode, radix: 8))"])
            }
            if !manager.fileExists(atPath: databasePath),
                !manager.createFile(atPath: databasePath, contents: nil, attributes: [.posixPermissions: 0o600])
            {
                throw TransportError.storage("cannot create \(databasePath)")
            }
            for suffix in ["", "-wal", "-shm", "-journal"] where manager.fileExists(atPath: databasePath + suffix) {
                chmod(databasePath + suffix, 0o600)
            }
        } catch {
            throw .storage("cannot prepare data directory \(url.path): \(error)")
        }
        let objectRoot = url.appendingPathComponent("objects", isDirectory: true)
        let leftovers = EmbeddedObjectStore.removeLeftovers(
            under: objectRoot, staging: Self.stagingDirectory(objects: objectRoot, bucket: names.bucket))
        if leftovers > 0 { logger.notice("removed unfinished object writes", metadata: ["files": "\(leftovers)"]) }
        let database = try await EmbeddedDatabase.open(path: databasePath, logger: logger)
        let transport = EmbeddedTransport(
            database: database, directory: url, bucket: names.bucket, pollInterval: crossProcessPollInterval, time: time)
        try await transport.purgeExpired()
        return transport
    }

    /// Where the API streams an upload before ``ObjectStore/createFromFile(key:file:contentType:)``
    /// links it into place (same file system; emptied at every start).
    public var uploadStagingDirectory: URL? { stagingFolderURL }

    /// The folder upload bodies are staged in.
    public var stagingFolderURL: URL {
        Self.stagingDirectory(objects: directory.appendingPathComponent("objects", isDirectory: true), bucket: objects.bucket)
    }

    static func stagingDirectory(objects: URL, bucket: String) -> URL {
        objects.appendingPathComponent(bucket, isDirectory: true).appendingPathComponent(EmbeddedObjectStore.stagingFolder, isDirectory: true)
    }

    public func queue(named name: String) -> any MessageQueue {
        EmbeddedQueue(name: name, database: database, signal: signal, crossProcessPollInterval: crossProcessPollInterval, time: time)
    }

    public func topic(named name: String) -> any Topic {
        EmbeddedTopic(name: name, database: database, signal: signal, time: time)
    }

    public func provision(_ topology: Topology) async throws(TransportError) {
        for queue in topology.queues {
            try await database.query(
                """
                INSERT INTO queues (name, visibility_timeout_ms, max_receive_count, dead_letter_queue)
                VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET
                  visibility_timeout_ms = excluded.visibility_timeout_ms,
                  max_receive_count = excluded.max_receive_count,
                  dead_letter_queue = excluded.dead_letter_queue
                """,
                [.text(queue.name), .int(queue.visibilityTimeout.milliseconds), .int(queue.maxReceiveCount),
                 .optionalText(queue.deadLetterQueue)])
        }
        for topic in topology.topics {
            try await database.query("INSERT OR IGNORE INTO topics (name) VALUES (?)", [.text(topic)])
        }
        for subscription in topology.subscriptions {
            try await database.query(
                "INSERT OR REPLACE INTO subscriptions (topic, queue, filter_policy) VALUES (?, ?, ?)",
                [.text(subscription.topic), .text(subscription.queue),
                 .optionalText(subscription.filterPolicy?.jsonString())])
        }
    }

    /// A secret kept in the database, created on first use (e.g. the key that signs object URLs).
    public func localSecret(named name: String) async throws(TransportError) -> Data? {
        try await secret(named: name)
    }

    public func secret(named name: String) async throws(TransportError) -> Data {
        let candidate = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        try await database.query("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", [.text(name), .text(candidate)])
        let rows = try await database.query("SELECT value FROM meta WHERE key = ?", [.text(name)])
        guard let text = rows.first?.text("value"), let data = Data(base64Encoded: text) else {
            throw .storage("secret \(name) is unreadable")
        }
        return data
    }

    /// Removes expired task records and messages older than the retention period.
    public func purgeExpired(messageRetention: Duration = .seconds(4 * 24 * 3600)) async throws(TransportError) {
        let now = EpochClock.nowMillis()
        try await database.query("DELETE FROM tasks WHERE expires_at <= ?", [.int(now)])
        try await database.query("DELETE FROM audit WHERE expires_at <= ?", [.int(now)])
        try await database.query("DELETE FROM workers WHERE expires_at <= ?", [.int(now - WorkerHeartbeat.retainedFor)])
        try await database.query("DELETE FROM messages WHERE sent_at <= ?", [.int(now - messageRetention.milliseconds)])
    }

    /// The embedded lifecycle rule: removes expired records and old messages, and deletes objects
    /// under `prefixes` written more than `objectTTL` ago (files and metadata). Returns how many
    /// objects were deleted.
    @discardableResult
    public func sweepExpired(objectTTL: Duration, prefixes: [String]) async throws(TransportError) -> Int {
        try await purgeExpired()
        let cutoff = EpochClock.nowMillis() - objectTTL.milliseconds
        let rows = try await database.query(
            "SELECT key FROM objects WHERE created_at <= ? AND key LIKE ?", [.int(cutoff), .text("\(objects.bucket)/%")])
        var deleted = 0
        for row in rows {
            guard let stored = row.text("key") else { continue }
            let key = String(stored.dropFirst(objects.bucket.count + 1))
            guard prefixes.contains(where: { key.hasPrefix($0) }) else { continue }
            try await objects.delete(key: key)
            deleted += 1
        }
        return deleted
    }

    /// Closes the database; the transport is unusable afterwards.
    public func close() async {
        await database.close()
    }
}
