import Foundation
import SDQAWS

/// Task records in DynamoDB. An item: `id` (key), `status`, `version` (optimistic concurrency),
/// `record` (the JSON record) and `expires_at` (epoch seconds, the table's TTL attribute). An
/// idempotency key is an item of its own (`id` = `idem#<key>`, `task_id`), written in the same
/// transaction as the task, so a key maps to exactly one task.
public struct AWSTaskStore: TaskStore {
    static let ttlAttribute = "expires_at"
    /// The TTL attribute of the task table.
    public static var ttlAttributeName: String { ttlAttribute }
    let table: String
    let dynamo: DynamoDBClient

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    private func item(_ record: TaskRecord, version: Int64) throws(TransportError) -> DynamoItem {
        guard let data = try? Self.encoder.encode(record), let text = String(data: data, encoding: .utf8) else {
            throw .storage("cannot encode task \(record.id)")
        }
        return [
            "id": .string(record.id), "status": .string(record.status.rawValue), "version": .int(version),
            "record": .string(text), Self.ttlAttribute: .int(record.expiresAt / 1000),
        ]
    }

    private func decode(_ item: DynamoItem) throws(TransportError) -> (TaskRecord, Int64) {
        guard let text = item["record"]?.stringValue, let record = try? JSONDecoder().decode(TaskRecord.self, from: Data(text.utf8)) else {
            throw .storage("corrupt task item")
        }
        return (record, item["version"]?.intValue ?? 0)
    }

    private func fetch(_ id: String) async throws(TransportError) -> DynamoItem? {
        do { return try await dynamo.getItem(table: table, key: ["id": .string(id)]) } catch { throw TransportError(aws: error) }
    }

    private func live(_ item: DynamoItem?) -> DynamoItem? {
        guard let item, let expires = item[Self.ttlAttribute]?.intValue else { return item }
        // DynamoDB deletes expired items lazily: hide them as the embedded store does.
        return expires * 1000 > EpochClock.nowMillis() ? item : nil
    }

    public func create(_ record: TaskRecord) async throws(TransportError) -> CreateOutcome {
        let taskPut = DynamoPut(table: table, item: try item(record, version: 1), condition: "attribute_not_exists(id)")
        for _ in 0..<3 {
            do throws(AWSError) {
                if let key = record.idempotencyKey {
                    let idem = DynamoPut(
                        table: table,
                        item: ["id": .string("idem#\(key)"), "task_id": .string(record.id), Self.ttlAttribute: .int(record.expiresAt / 1000)],
                        condition: "attribute_not_exists(id) OR #ttl < :now", names: ["#ttl": Self.ttlAttribute],
                        values: [":now": .int(EpochClock.nowMillis() / 1000)])
                    try await dynamo.transactPut([idem, taskPut])
                } else {
                    try await dynamo.putItem(taskPut)
                }
                return .created(record)
            } catch where error.code == "TransactionCanceledException" || error.code == "ConditionalCheckFailedException" {
                // Taken: by the idempotency key, or (vanishingly rarely) by the id.
                var existingID = record.id
                if let key = record.idempotencyKey, let idem = live(try await fetch("idem#\(key)")), let taskID = idem["task_id"]?.stringValue {
                    existingID = taskID
                }
                if let existing = live(try await fetch(existingID)) { return .existing(try decode(existing).0) }
                // The key points at an expired or missing task: try again (the condition lets an expired key be reused).
                continue
            } catch {
                throw TransportError(aws: error)
            }
        }
        throw .storage("cannot create task \(record.id): its idempotency key is contended")
    }

    public func get(id: String) async throws(TransportError) -> TaskRecord? {
        guard let item = live(try await fetch(id)) else { return nil }
        return try decode(item).0
    }

    public func update(id: String, ifStatusIn allowed: Set<TaskStatus>, _ mutate: @Sendable (inout TaskRecord) -> Void)
        async throws(TransportError) -> UpdateOutcome
    {
        for _ in 0..<50 {
            guard let item = live(try await fetch(id)) else { return .notFound }
            let (current, version) = try decode(item)
            guard allowed.contains(current.status) else { return .conflict(current) }
            var updated = current
            mutate(&updated)
            updated.id = current.id
            let newItem = try self.item(updated, version: version + 1)
            do throws(AWSError) {
                try await dynamo.putItem(DynamoPut(
                    table: table, item: newItem, condition: "#v = :v", names: ["#v": "version"], values: [":v": .int(version)]))
                return .applied(updated)
            } catch where error.code == "ConditionalCheckFailedException" {
                continue  // lost a race: read again
            } catch {
                throw TransportError(aws: error)
            }
        }
        throw .storage("task \(id) is updated too often to apply a change")
    }
}
