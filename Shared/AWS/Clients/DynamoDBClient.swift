import Foundation

/// A DynamoDB attribute value (the scalar types sdq stores).
public enum DynamoValue: Sendable, Equatable {
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    public static func int(_ value: Int64) -> DynamoValue { .number(String(value)) }

    var json: JSONValue {
        switch self {
        case .string(let value): ["S": .string(value)]
        case .number(let value): ["N": .string(value)]
        case .bool(let value): ["BOOL": .bool(value)]
        case .null: ["NULL": true]
        }
    }

    init?(json: JSONValue) {
        guard case .object(let object) = json else { return nil }
        if let value = object["S"]?.stringValue {
            self = .string(value)
        } else if let value = object["N"]?.stringValue {
            self = .number(value)
        } else if let value = object["BOOL"]?.boolValue {
            self = .bool(value)
        } else if object["NULL"] != nil {
            self = .null
        } else {
            return nil
        }
    }

    public var stringValue: String? { if case .string(let value) = self { value } else { nil } }
    public var intValue: Int64? { if case .number(let value) = self { Int64(value) } else { nil } }
}

/// A DynamoDB item.
public typealias DynamoItem = [String: DynamoValue]

/// One conditional put of a transaction.
public struct DynamoPut: Sendable {
    public var table: String
    public var item: DynamoItem
    public var condition: String?
    public var names: [String: String]
    public var values: DynamoItem

    public init(table: String, item: DynamoItem, condition: String? = nil, names: [String: String] = [:], values: DynamoItem = [:]) {
        self.table = table
        self.item = item
        self.condition = condition
        self.names = names
        self.values = values
    }

    var json: JSONValue {
        var put: [String: JSONValue] = ["TableName": .string(table), "Item": DynamoDBClient.encode(item)]
        if let condition { put["ConditionExpression"] = .string(condition) }
        if !names.isEmpty { put["ExpressionAttributeNames"] = .strings(names) }
        if !values.isEmpty { put["ExpressionAttributeValues"] = DynamoDBClient.encode(values) }
        return .object(put)
    }
}

/// One conditional update of a transaction (``DynamoDBClient/transactWrite(_:)``).
public struct DynamoUpdate: Sendable {
    public var table: String
    public var key: DynamoItem
    public var update: String
    public var condition: String?
    public var names: [String: String]
    public var values: DynamoItem

    public init(
        table: String, key: DynamoItem, update: String, condition: String? = nil, names: [String: String] = [:], values: DynamoItem = [:]
    ) {
        self.table = table
        self.key = key
        self.update = update
        self.condition = condition
        self.names = names
        self.values = values
    }

    var json: JSONValue {
        var body: [String: JSONValue] = [
            "TableName": .string(table), "Key": DynamoDBClient.encode(key), "UpdateExpression": .string(update),
        ]
        if let condition { body["ConditionExpression"] = .string(condition) }
        if !names.isEmpty { body["ExpressionAttributeNames"] = .strings(names) }
        if !values.isEmpty { body["ExpressionAttributeValues"] = DynamoDBClient.encode(values) }
        return .object(body)
    }
}

/// One write of a transaction.
public enum DynamoWrite: Sendable {
    case put(DynamoPut)
    case update(DynamoUpdate)

    var json: JSONValue {
        switch self {
        case .put(let put): ["Put": put.json]
        case .update(let update): ["Update": update.json]
        }
    }
}

/// DynamoDB over the AWS JSON 1.0 protocol.
public struct DynamoDBClient: Sendable {
    public let client: AWSHTTPClient

    public init(client: AWSHTTPClient) { self.client = client }

    private func call(_ operation: String, _ payload: JSONValue) async throws(AWSError) -> JSONValue {
        try await client.json(service: "dynamodb", target: "DynamoDB_20120810.\(operation)", payload)
    }

    static func encode(_ item: DynamoItem) -> JSONValue { .object(item.mapValues(\.json)) }

    static func decode(_ json: JSONValue?) -> DynamoItem? {
        guard let object = json?.objectValue else { return nil }
        var item: DynamoItem = [:]
        for (name, value) in object { if let decoded = DynamoValue(json: value) { item[name] = decoded } }
        return item
    }

    /// Creates an on-demand table keyed by the string attribute `hashKey`; an existing table is fine.
    public func createTable(name: String, hashKey: String) async throws(AWSError) {
        do {
            _ = try await call("CreateTable", [
                "TableName": .string(name), "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [["AttributeName": .string(hashKey), "AttributeType": "S"]],
                "KeySchema": [["AttributeName": .string(hashKey), "KeyType": "HASH"]],
            ])
        } catch where error.code == "ResourceInUseException" {
            return
        }
    }

    /// A global secondary index: a string hash key and a number range key, every attribute
    /// projected.
    public struct SecondaryIndex: Sendable, Equatable {
        public var name: String
        public var hashKey: String
        public var rangeKey: String
        public init(name: String, hashKey: String, rangeKey: String) {
            self.name = name
            self.hashKey = hashKey
            self.rangeKey = rangeKey
        }
    }

    /// Adds `index` to an existing on-demand table unless it has it already (tables made before
    /// the index existed get it on the next `sdq aws init`).
    public func ensureIndex(table: String, _ index: SecondaryIndex) async throws(AWSError) {
        let described = try await call("DescribeTable", ["TableName": .string(table)])
        let existing = described["Table"]?["GlobalSecondaryIndexes"]?.arrayValue ?? []
        if existing.contains(where: { $0["IndexName"]?.stringValue == index.name }) { return }
        do {
            _ = try await call("UpdateTable", [
                "TableName": .string(table),
                "AttributeDefinitions": [
                    ["AttributeName": .string(index.hashKey), "AttributeType": "S"],
                    ["AttributeName": .string(index.rangeKey), "AttributeType": "N"],
                ],
                "GlobalSecondaryIndexUpdates": [[
                    "Create": [
                        "IndexName": .string(index.name),
                        "KeySchema": [
                            ["AttributeName": .string(index.hashKey), "KeyType": "HASH"],
                            ["AttributeName": .string(index.rangeKey), "KeyType": "RANGE"],
                        ],
                        "Projection": ["ProjectionType": "ALL"],
                    ]
                ]],
            ])
        } catch where error.code == "ResourceInUseException" || error.message.lowercased().contains("already exists") {
            return
        }
    }

    /// One page of a `Query`.
    public struct QueryPage: Sendable {
        public var items: [DynamoItem]
        /// Where the next page starts; nil when the query is done.
        public var lastEvaluatedKey: DynamoItem?
    }

    /// One `Query` call: items whose key matches `keyCondition`, optionally filtered, in range-key
    /// order (`forward` false: descending), reading at most `limit` items before filtering.
    public func query(
        table: String, index: String? = nil, keyCondition: String, filter: String? = nil, names: [String: String] = [:],
        values: DynamoItem, forward: Bool = true, limit: Int, startKey: DynamoItem? = nil
    ) async throws(AWSError) -> QueryPage {
        var payload: [String: JSONValue] = [
            "TableName": .string(table), "KeyConditionExpression": .string(keyCondition),
            "ExpressionAttributeValues": Self.encode(values), "ScanIndexForward": .bool(forward), "Limit": .number(Double(limit)),
        ]
        if let index { payload["IndexName"] = .string(index) }
        if let filter { payload["FilterExpression"] = .string(filter) }
        if !names.isEmpty { payload["ExpressionAttributeNames"] = .strings(names) }
        if let startKey { payload["ExclusiveStartKey"] = Self.encode(startKey) }
        let response = try await call("Query", .object(payload))
        let items = (response["Items"]?.arrayValue ?? []).compactMap { Self.decode($0) }
        return QueryPage(items: items, lastEvaluatedKey: Self.decode(response["LastEvaluatedKey"]))
    }

    /// The table's status (`CREATING`, `ACTIVE`…), nil when it does not exist.
    public func tableStatus(name: String) async throws(AWSError) -> String? {
        do {
            let response = try await call("DescribeTable", ["TableName": .string(name)])
            return response["Table"]?["TableStatus"]?.stringValue
        } catch where error.code == "ResourceNotFoundException" {
            return nil
        }
    }

    /// What `DescribeTable` says of a table: its status and each global secondary index's status,
    /// by name; nil when the table does not exist.
    public func describeTable(name: String) async throws(AWSError) -> (status: String, indexes: [String: String])? {
        do {
            let table = try await call("DescribeTable", ["TableName": .string(name)])["Table"]
            var indexes: [String: String] = [:]
            for index in table?["GlobalSecondaryIndexes"]?.arrayValue ?? [] {
                if let name = index["IndexName"]?.stringValue { indexes[name] = index["IndexStatus"]?.stringValue ?? "" }
            }
            return (table?["TableStatus"]?.stringValue ?? "", indexes)
        } catch where error.code == "ResourceNotFoundException" {
            return nil
        }
    }

    /// The table's TTL status (`ENABLED`, `DISABLED`…) and attribute (`DescribeTimeToLive`).
    public func timeToLive(table: String) async throws(AWSError) -> (status: String, attribute: String?) {
        let described = try await call("DescribeTimeToLive", ["TableName": .string(table)])["TimeToLiveDescription"]
        return (described?["TimeToLiveStatus"]?.stringValue ?? "DISABLED", described?["AttributeName"]?.stringValue)
    }

    /// Turns on TTL on `attribute`; already on is fine.
    public func enableTimeToLive(table: String, attribute: String) async throws(AWSError) {
        let described = try await call("DescribeTimeToLive", ["TableName": .string(table)])
        let current = described["TimeToLiveDescription"]
        if current?["TimeToLiveStatus"]?.stringValue == "ENABLED", current?["AttributeName"]?.stringValue == attribute { return }
        do {
            _ = try await call("UpdateTimeToLive", [
                "TableName": .string(table), "TimeToLiveSpecification": ["Enabled": true, "AttributeName": .string(attribute)],
            ])
        } catch where error.code == "ValidationException" && error.message.lowercased().contains("already enabled") {
            return
        }
    }

    /// Writes an item, if `condition` holds (throws `ConditionalCheckFailedException` otherwise).
    public func putItem(_ put: DynamoPut) async throws(AWSError) {
        _ = try await call("PutItem", put.json)
    }

    /// Reads an item (strongly consistent); nil when absent.
    public func getItem(table: String, key: DynamoItem) async throws(AWSError) -> DynamoItem? {
        let response = try await call("GetItem", ["TableName": .string(table), "Key": Self.encode(key), "ConsistentRead": true])
        return Self.decode(response["Item"])
    }

    /// Deletes an item, if `condition` holds.
    public func deleteItem(table: String, key: DynamoItem, condition: String? = nil, values: DynamoItem = [:]) async throws(AWSError) {
        var payload: [String: JSONValue] = ["TableName": .string(table), "Key": Self.encode(key)]
        if let condition { payload["ConditionExpression"] = .string(condition) }
        if !values.isEmpty { payload["ExpressionAttributeValues"] = Self.encode(values) }
        _ = try await call("DeleteItem", .object(payload))
    }

    /// Applies all puts or none (`TransactionCanceledException` when a condition fails).
    public func transactPut(_ puts: [DynamoPut]) async throws(AWSError) {
        try await transactWrite(puts.map(DynamoWrite.put))
    }

    /// The per-write reasons of a `TransactionCanceledException` (`None`,
    /// `ConditionalCheckFailed`, `TransactionConflict`, …), in the order of the writes, as its
    /// message lists them; nil when the message lists none.
    public static func cancellationReasons(_ error: AWSError) -> [String]? {
        guard error.code == "TransactionCanceledException", let open = error.message.lastIndex(of: "["),
            let close = error.message.lastIndex(of: "]"), open < close
        else { return nil }
        let list = error.message[error.message.index(after: open)..<close]
        let reasons = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return reasons.isEmpty ? nil : reasons
    }

    /// Applies all writes or none (`TransactionCanceledException` when a condition fails).
    public func transactWrite(_ writes: [DynamoWrite]) async throws(AWSError) {
        _ = try await call("TransactWriteItems", ["TransactItems": .array(writes.map(\.json))])
    }

    /// Changes attributes of an item with an update expression, if `condition` holds (throws
    /// `ConditionalCheckFailedException` otherwise); returns the item as it is after the update.
    public func updateItem(
        table: String, key: DynamoItem, update: String, condition: String? = nil, names: [String: String] = [:],
        values: DynamoItem = [:]
    ) async throws(AWSError) -> DynamoItem? {
        var payload: [String: JSONValue] = [
            "TableName": .string(table), "Key": Self.encode(key), "UpdateExpression": .string(update), "ReturnValues": "ALL_NEW",
        ]
        if let condition { payload["ConditionExpression"] = .string(condition) }
        if !names.isEmpty { payload["ExpressionAttributeNames"] = .strings(names) }
        if !values.isEmpty { payload["ExpressionAttributeValues"] = Self.encode(values) }
        let response = try await call("UpdateItem", .object(payload))
        return Self.decode(response["Attributes"])
    }
}
