import Foundation
import SDQAWS
import SDQPlatform

/// The model registry in the task table: one item per name (`id` = `model#<name>`) in the
/// task-list index's partition `#models`, so listing the registry is one Query, never a scan.
/// Registrations do not expire.
extension AWSTaskStore {
    static let modelsPartition = "#models"

    public func putModel(_ record: ModelRecord, replace: Bool) async throws(TransportError) -> Bool {
        let item: DynamoItem = [
            "id": .string("model#\(record.name)"), "tenant": .string(Self.modelsPartition),
            "submitted_at": .int(record.registeredAt), "model": .string(try TaskItemLayout.json(record)),
        ]
        do throws(AWSError) {
            try await dynamo.putItem(DynamoPut(table: table, item: item, condition: replace ? nil : "attribute_not_exists(id)"))
            return true
        } catch where error.code == "ConditionalCheckFailedException" {
            return false
        } catch {
            throw TransportError(aws: error)
        }
    }

    public func models() async throws(TransportError) -> [ModelRecord] {
        var found: [ModelRecord] = []
        var startKey: DynamoItem?
        let values: DynamoItem = [":t": .string(Self.modelsPartition), ":lo": .int(0), ":hi": .int(Int64.max / 2)]
        repeat {
            let page: DynamoDBClient.QueryPage
            do {
                page = try await dynamo.query(
                    table: table, index: Self.listIndex.name, keyCondition: "#t = :t AND #s BETWEEN :lo AND :hi",
                    names: ["#t": "tenant", "#s": "submitted_at"], values: values, limit: 500, startKey: startKey)
            } catch {
                throw TransportError(aws: error)
            }
            found += page.items.compactMap { TaskItemLayout.parse(ModelRecord.self, $0["model"]) }
            startKey = page.lastEvaluatedKey
        } while startKey != nil
        return found.sorted { $0.name < $1.name }
    }

    public func model(named name: String) async throws(TransportError) -> ModelRecord? {
        do {
            let item = try await dynamo.getItem(table: table, key: ["id": .string("model#\(name)")])
            return TaskItemLayout.parse(ModelRecord.self, item?["model"])
        } catch {
            throw TransportError(aws: error)
        }
    }

    public func deleteModel(named name: String) async throws(TransportError) -> Bool {
        do throws(AWSError) {
            try await dynamo.deleteItem(table: table, key: ["id": .string("model#\(name)")], condition: "attribute_exists(id)")
            return true
        } catch where error.code == "ConditionalCheckFailedException" {
            return false
        } catch {
            throw TransportError(aws: error)
        }
    }
}
