import Foundation
import SDQAWS
import SDQMessages
import SDQPlatform

/// Task records in DynamoDB, laid out as ``TaskItemLayout`` describes: each lifecycle event is
/// one conditional `UpdateItem` (status and guards in the condition, the new item returned), with
/// a read only when the condition fails. An idempotency key is an item of its own
/// (`id` = `idem#<key>`, `task_id`), written in the same transaction as the task, so a key maps to
/// exactly one task.
public struct AWSTaskStore: TaskStore {
    static let ttlAttribute = "expires_at"
    /// The TTL attribute of the task table.
    public static var ttlAttributeName: String { ttlAttribute }
    let table: String
    let dynamo: DynamoDBClient

    private func item(_ record: TaskRecord, version: Int64) throws(TransportError) -> DynamoItem {
        try TaskItemLayout.item(record, version: version, ttlAttribute: Self.ttlAttribute)
    }

    private func decode(_ item: DynamoItem) throws(TransportError) -> (TaskRecord, Int64) {
        try TaskItemLayout.record(from: item)
    }

    private func fetch(_ id: String) async throws(TransportError) -> DynamoItem? {
        do { return try await dynamo.getItem(table: table, key: ["id": .string(id)]) } catch { throw TransportError(aws: error) }
    }

    private func live(_ item: DynamoItem?) -> DynamoItem? {
        guard let item, let expires = item[Self.ttlAttribute]?.intValue else { return item }
        // DynamoDB deletes expired items lazily: hide them as the embedded store does.
        return expires * 1000 > EpochClock.nowMillis() ? item : nil
    }

    public func create(_ record: TaskRecord, inFlightLimit: Int?) async throws(TransportError) -> CreateOutcome {
        let taskPut = DynamoPut(table: table, item: try item(record, version: 1), condition: "attribute_not_exists(id)")
        // Concurrent submissions of one tenant meet on its quota item; DynamoDB cancels all but
        // one transaction on it (TransactionConflict), so a lost race waits a moment and retries.
        for attempt in 0..<(record.inFlightSlot == nil ? 3 : 20) {
            if attempt > 0, record.inFlightSlot != nil { try? await Task.sleep(for: .milliseconds(Int.random(in: 5...(20 * min(attempt, 5))))) }
            do throws(AWSError) {
                var writes: [DynamoWrite] = []
                if let key = record.idempotencyKey {
                    writes.append(.put(DynamoPut(
                        table: table,
                        item: ["id": .string("idem#\(key)"), "task_id": .string(record.id), Self.ttlAttribute: .int(record.expiresAt / 1000)],
                        condition: "attribute_not_exists(id) OR #ttl < :now", names: ["#ttl": Self.ttlAttribute],
                        values: [":now": .int(EpochClock.nowMillis() / 1000)])))
                }
                writes.append(.put(taskPut))
                if let slot = record.inFlightSlot { writes.append(.update(slotChange(slot, by: 1, limit: inFlightLimit))) }
                if writes.count == 1 { try await dynamo.putItem(taskPut) } else { try await dynamo.transactWrite(writes) }
                return .created(record)
            } catch where error.code == "TransactionCanceledException" || error.code == "ConditionalCheckFailedException" {
                // The reasons say, without a read, whether only the in-flight count refused (or
                // only a concurrent transaction on the tenant's quota item got in the way).
                if record.inFlightSlot != nil, let reasons = DynamoDBClient.cancellationReasons(error), reasons.count >= 2 {
                    let others = reasons.dropLast()
                    if !others.contains("ConditionalCheckFailed") {
                        if reasons.last == "ConditionalCheckFailed", let inFlightLimit { return .inFlightLimitReached(limit: inFlightLimit) }
                        if reasons.contains("TransactionConflict") { continue }
                    }
                }
                // Taken: by the idempotency key, or (vanishingly rarely) by the id; or refused by the limit.
                var existingID = record.id
                if let key = record.idempotencyKey, let idem = live(try await fetch("idem#\(key)")), let taskID = idem["task_id"]?.stringValue {
                    existingID = taskID
                }
                if let existing = live(try await fetch(existingID)) { return .existing(try decode(existing).0) }
                if let slot = record.inFlightSlot, let inFlightLimit, try await inFlight(tenant: slot) >= inFlightLimit {
                    return .inFlightLimitReached(limit: inFlightLimit)
                }
                // The key points at an expired or missing task, or a slot came free: try again
                // (the condition lets an expired key be reused).
                continue
            } catch {
                throw TransportError(aws: error)
            }
        }
        throw .storage("cannot create task \(record.id): its idempotency key or its tenant's in-flight count is contended")
    }

    /// The key of a tenant's quota item: its in-flight count (`in_flight`) and its submission
    /// rate's theoretical arrival time (`rate_tat`). No TTL: it lives as long as the tenant.
    static func quotaKey(_ tenant: String) -> DynamoItem { ["id": .string("quota#\(tenant)")] }

    /// Moves a tenant's in-flight count by `delta`, refusing to go past `limit` when one is given
    /// (a decrement is never refused: the ending it belongs to must happen).
    private func slotChange(_ tenant: String, by delta: Int64, limit: Int?) -> DynamoUpdate {
        var values: DynamoItem = [":zero": .int(0), ":delta": .int(delta)]
        var condition: String?
        if let limit, delta > 0 {
            values[":limit"] = .int(Int64(limit))
            condition = "attribute_not_exists(#n) OR #n < :limit"
        }
        return DynamoUpdate(
            table: table, key: Self.quotaKey(tenant), update: "SET #n = if_not_exists(#n, :zero) + :delta", condition: condition,
            names: ["#n": "in_flight"], values: values)
    }

    /// One conditional `UpdateItem` in the common case, with no read: DynamoDB applies an update
    /// and its condition atomically, so concurrent API instances never lose each other's tokens.
    /// A rested bucket (arrival time absent or past) moves the time to now + interval; a bucket in
    /// use moves it by one interval while that stays within the burst. When neither condition
    /// holds, one read tells a refusal (its `Retry-After`) from a race, which is tried again.
    public func takeSubmission(tenant: String, rate: SubmissionRate, now: Int64) async throws(TransportError) -> RateDecision {
        let interval = rate.intervalMillis
        let latest = rate.latestArrival(now: now)
        let names = ["#t": "rate_tat"]
        let rested = (update: "SET #t = :next", condition: "attribute_not_exists(#t) OR #t <= :now",
                      values: [":next": DynamoValue.int(now + interval), ":now": .int(now)])
        let inUse = (update: "SET #t = #t + :interval", condition: "#t > :now AND #t <= :latest",
                     values: [":interval": DynamoValue.int(interval), ":now": .int(now), ":latest": .int(latest)])
        for _ in 0..<10 {
            for attempt in [rested, inUse] {
                do throws(AWSError) {
                    let item = try await dynamo.updateItem(
                        table: table, key: Self.quotaKey(tenant), update: attempt.update, condition: attempt.condition, names: names,
                        values: attempt.values)
                    let stored = item?["rate_tat"]?.intValue ?? now + interval
                    // The decision the pure algorithm makes for the time just stored.
                    return rate.decide(arrivalTime: stored - interval, now: now)
                } catch where error.code == "ConditionalCheckFailedException" {
                    continue
                } catch {
                    throw TransportError(aws: error)
                }
            }
            let stored = try await fetch("quota#\(tenant)")?["rate_tat"]?.intValue
            let decision = rate.decide(arrivalTime: stored, now: now)
            if !decision.allowed { return decision }
        }
        throw .storage("the submission rate of \(tenant) is contended")
    }

    /// The partition of the task-list index that holds audit records (no tenant name can start
    /// with `#`), so reading them by time is a Query like the task list, never a scan.
    static let auditPartition = "#audit"

    /// An item of its own (`id` = `audit#<id>`), expiring by the table's TTL.
    public func appendAudit(_ record: AuditRecord) async throws(TransportError) {
        let item: DynamoItem = [
            "id": .string("audit#\(record.id)"), "tenant": .string(Self.auditPartition), "submitted_at": .int(record.at),
            "audit": .string(try TaskItemLayout.json(record)), Self.ttlAttribute: .int(record.expiresAt / 1000),
        ]
        do { try await dynamo.putItem(DynamoPut(table: table, item: item)) } catch { throw TransportError(aws: error) }
    }

    public func audit(_ query: AuditQuery) async throws(TransportError) -> (records: [AuditRecord], more: Bool) {
        let values: DynamoItem = [
            ":t": .string(Self.auditPartition), ":lo": .int(query.since ?? 0), ":hi": .int((query.until ?? Int64.max / 2) - 1),
        ]
        var startKey = query.after.map { after -> DynamoItem in
            ["id": .string("audit#\(after.id)"), "tenant": .string(Self.auditPartition), "submitted_at": .int(after.at)]
        }
        var records: [AuditRecord] = []
        let now = EpochClock.nowMillis()
        for _ in 0..<8 {
            let page: DynamoDBClient.QueryPage
            do {
                page = try await dynamo.query(
                    table: table, index: Self.listIndex.name, keyCondition: "#t = :t AND #s BETWEEN :lo AND :hi", filter: nil,
                    names: ["#t": "tenant", "#s": "submitted_at"], values: values, forward: false, limit: query.limit + 1 - records.count,
                    startKey: startKey)
            } catch {
                throw TransportError(aws: error)
            }
            for item in page.items {
                guard let record = TaskItemLayout.parse(AuditRecord.self, item["audit"]), record.expiresAt > now else { continue }
                records.append(record)
            }
            startKey = page.lastEvaluatedKey
            if records.count > query.limit || startKey == nil { break }
        }
        let more = records.count > query.limit || startKey != nil
        return (Array(records.prefix(query.limit)), more)
    }

    /// The partition of the task-list index that holds worker heartbeats (sorted by when they
    /// were written), so listing the fleet is a Query, never a scan.
    static let workersPartition = "#workers"

    /// An item per worker (`id` = `worker#<pool>#<worker>`), replaced by each heartbeat and
    /// expiring by the table's TTL (reads skip expired ones: the TTL deletes lazily).
    public func recordHeartbeat(_ heartbeat: WorkerHeartbeat) async throws(TransportError) {
        let item: DynamoItem = [
            "id": .string("worker#\(heartbeat.pool)#\(heartbeat.worker)"), "tenant": .string(Self.workersPartition),
            "submitted_at": .int(heartbeat.seenAt), "worker": .string(try TaskItemLayout.json(heartbeat)),
            Self.ttlAttribute: .int((heartbeat.expiresAt + WorkerHeartbeat.retainedFor) / 1000 + 1),
        ]
        do { try await dynamo.putItem(DynamoPut(table: table, item: item)) } catch { throw TransportError(aws: error) }
    }

    public func heartbeats(pool: String?, goneWithin: Int64) async throws(TransportError) -> [WorkerHeartbeat] {
        let now = EpochClock.nowMillis()
        let since = now - max(0, goneWithin)
        var found: [WorkerHeartbeat] = []
        var startKey: DynamoItem?
        // Only heartbeats written within the last hour can still be live (a heartbeat lives a few intervals).
        let values: DynamoItem = [":t": .string(Self.workersPartition), ":lo": .int(now - 3_600_000), ":hi": .int(Int64.max / 2)]
        for _ in 0..<20 {
            let page: DynamoDBClient.QueryPage
            do {
                page = try await dynamo.query(
                    table: table, index: Self.listIndex.name, keyCondition: "#t = :t AND #s BETWEEN :lo AND :hi", filter: nil,
                    names: ["#t": "tenant", "#s": "submitted_at"], values: values, forward: false, limit: 500, startKey: startKey)
            } catch {
                throw TransportError(aws: error)
            }
            for item in page.items {
                guard let heartbeat = TaskItemLayout.parse(WorkerHeartbeat.self, item["worker"]), heartbeat.expiresAt > since,
                    pool == nil || heartbeat.pool == pool
                else { continue }
                found.append(heartbeat)
            }
            startKey = page.lastEvaluatedKey
            if startKey == nil { break }
        }
        return found.sorted { ($0.pool, $0.worker) < ($1.pool, $1.worker) }
    }

    public func inFlight(tenant: String) async throws(TransportError) -> Int {
        max(0, Int(try await fetch("quota#\(tenant)")?["in_flight"]?.intValue ?? 0))
    }

    public func get(id: String) async throws(TransportError) -> TaskRecord? {
        guard let item = live(try await fetch(id)) else { return nil }
        return try decode(item).0
    }

    public func apply(_ event: TaskEvent, to id: String) async throws(TransportError) -> UpdateOutcome {
        let transition = TaskLifecycle.transition(for: event)
        guard let fields = transition.fields, !transition.guards.contains(.submitFailed) else {
            return try await readModifyWrite(id: id, permits: transition.permits) { TaskLifecycle.apply(event, to: &$0) }
        }
        // An ending of a task that holds an in-flight slot must give the slot back in the same
        // write: the fast path is only for tasks without one; the others take the transaction.
        let expression = try UpdateExpression(
            fields: fields, transition: transition, ttlAttribute: Self.ttlAttribute,
            requireNoSlot: TaskLifecycle.mayEnd(event) ? TaskItemLayout.slotAttribute : nil)
        let updated: DynamoItem?
        do throws(AWSError) {
            updated = try await dynamo.updateItem(
                table: table, key: ["id": .string(id)], update: expression.update, condition: expression.condition,
                names: expression.names, values: expression.values)
        } catch where error.code == "ConditionalCheckFailedException" {
            // Missing, expired, refused by the lifecycle, still in layout 1, or holding a slot.
            guard let item = live(try await fetch(id)) else { return .notFound }
            let (current, _) = try decode(item)
            guard transition.permits(current) else { return .conflict(current) }
            return try await readModifyWrite(id: id, first: item, permits: transition.permits) { TaskLifecycle.apply(event, to: &$0) }
        } catch {
            throw TransportError(aws: error)
        }
        guard let updated else { throw .storage("UpdateItem returned no item for task \(id)") }
        return .applied(try decode(updated).0)
    }

    public func update(id: String, ifStatusIn allowed: Set<TaskStatus>, _ mutate: @Sendable (inout TaskRecord) -> Void)
        async throws(TransportError) -> UpdateOutcome
    {
        try await readModifyWrite(id: id, permits: { allowed.contains($0.status) }, mutate)
    }

    /// The task-list index: tenant, then submitted time (epoch milliseconds). Items written
    /// before it existed carry neither attribute and are not listed.
    public static let listIndex = DynamoDBClient.SecondaryIndex(name: "tenant-submitted", hashKey: "tenant", rangeKey: "submitted_at")

    /// A page of a tenant's tasks: `Query` calls on ``listIndex`` (newest first), never a scan.
    /// The status and pool filters are applied by DynamoDB; when they leave a page short, the
    /// query reads on (at most eight calls per page, then the page ends early with a cursor).
    public func list(_ query: TaskListQuery) async throws(TransportError) -> TaskPage {
        var names = ["#t": "tenant", "#s": "submitted_at"]
        var values: DynamoItem = [
            ":t": .string(query.tenant), ":lo": .int(query.since ?? 0), ":hi": .int((query.until ?? Int64.max / 2) - 1),
        ]
        var filters: [String] = []
        if let status = query.status {
            names["#status"] = "status"
            values[":status"] = .string(status.rawValue)
            filters.append("#status = :status")
        }
        if let pool = query.pool {
            names["#pool"] = "pool"
            values[":pool"] = .string(pool)
            filters.append("#pool = :pool")
        }
        var startKey = query.after.map { position -> DynamoItem in
            ["id": .string(position.id), "tenant": .string(query.tenant), "submitted_at": .int(position.submittedAt)]
        }
        var records: [TaskRecord] = []
        let now = EpochClock.nowMillis()
        for _ in 0..<8 {
            let page: DynamoDBClient.QueryPage
            do {
                page = try await dynamo.query(
                    table: table, index: Self.listIndex.name, keyCondition: "#t = :t AND #s BETWEEN :lo AND :hi",
                    filter: filters.isEmpty ? nil : filters.joined(separator: " AND "), names: names, values: values, forward: false,
                    limit: query.limit + 1 - records.count, startKey: startKey)
            } catch {
                throw TransportError(aws: error)
            }
            for item in page.items {
                let record = try decode(item).0
                if record.expiresAt > now, query.admits(record) { records.append(record) }
            }
            startKey = page.lastEvaluatedKey
            if records.count > query.limit || startKey == nil { break }
        }
        if records.count > query.limit {
            records.removeLast(records.count - query.limit)
            return TaskPage(records: records, next: records.last.map(TaskListPosition.init))
        }
        // Read on no further this time: continue after the last item the index gave.
        guard let startKey, let id = startKey["id"]?.stringValue, let submitted = startKey["submitted_at"]?.intValue else {
            return TaskPage(records: records, next: nil)
        }
        return TaskPage(records: records, next: TaskListPosition(submittedAt: submitted, id: id))
    }

    /// Reads the item (the first time, `first` when given), applies `mutate` if `permits`
    /// allows, and puts the whole item back in layout 2 on condition that nobody wrote it
    /// meanwhile (`version`). A change that ends (or revives) a task holding an in-flight slot
    /// moves its tenant's count in the same transaction.
    private func readModifyWrite(
        id: String, first: DynamoItem? = nil, permits: (TaskRecord) -> Bool, _ mutate: (inout TaskRecord) -> Void
    ) async throws(TransportError) -> UpdateOutcome {
        var first = first
        for _ in 0..<50 {
            let read: DynamoItem?
            if let given = first { read = given } else { read = try await fetch(id) }
            first = nil
            guard let item = live(read) else { return .notFound }
            let (current, version) = try decode(item)
            guard permits(current) else { return .conflict(current) }
            var updated = current
            mutate(&updated)
            updated.id = current.id
            if updated == current, item[TaskItemLayout.layoutAttribute]?.intValue == TaskItemLayout.current { return .applied(current) }
            let newItem = try self.item(updated, version: version + 1)
            let put = DynamoPut(table: table, item: newItem, condition: "#v = :v", names: ["#v": "version"], values: [":v": .int(version)])
            let delta = current.inFlightSlot == nil ? 0 : TaskLifecycle.inFlightDelta(from: current.status, to: updated.status)
            do throws(AWSError) {
                if let slot = current.inFlightSlot, delta != 0 {
                    try await dynamo.transactWrite([.put(put), .update(slotChange(slot, by: Int64(delta), limit: nil))])
                } else {
                    try await dynamo.putItem(put)
                }
                return .applied(updated)
            } catch where error.code == "ConditionalCheckFailedException" || error.code == "TransactionCanceledException" {
                continue  // lost a race: read again
            } catch {
                throw TransportError(aws: error)
            }
        }
        throw .storage("task \(id) is updated too often to apply a change")
    }
}

/// A lifecycle transition as one DynamoDB update: the fields as `SET`/`REMOVE` clauses, and the
/// allowed statuses, the guards, the layout and the expiry as the condition.
struct UpdateExpression {
    var update: String
    var condition: String
    var names: [String: String] = [:]
    var values: DynamoItem = [:]

    init(fields: [TaskField], transition: TaskTransition, ttlAttribute: String, requireNoSlot slotAttribute: String? = nil)
        throws(TransportError)
    {
        var names: [String: String] = [:]
        var values: DynamoItem = [:]
        var sets: [String] = ["#version = #version + :one"]
        var removes: [String] = []
        names["#version"] = "version"
        values[":one"] = .int(1)
        var index = 0
        func name(_ attribute: String) -> String {
            let placeholder = "#\(attribute)"
            names[placeholder] = attribute
            return placeholder
        }
        for field in fields {
            for (attribute, value) in try TaskItemLayout.attributes(field) {
                let path = name(attribute)
                guard let value else {
                    removes.append(path)
                    continue
                }
                let placeholder = ":v\(index)"
                index += 1
                values[placeholder] = value
                sets.append(TaskItemLayout.keepsExisting(field) ? "\(path) = if_not_exists(\(path), \(placeholder))" : "\(path) = \(placeholder)")
            }
        }
        let update = "SET " + sets.joined(separator: ", ") + (removes.isEmpty ? "" : " REMOVE " + removes.joined(separator: ", "))

        var clauses = ["\(name(TaskItemLayout.layoutAttribute)) = :layout", "\(name(ttlAttribute)) > :now"]
        values[":layout"] = .int(TaskItemLayout.current)
        if let slotAttribute { clauses.append("attribute_not_exists(\(name(slotAttribute)))") }
        values[":now"] = .int(EpochClock.nowMillis() / 1000)
        let statuses = TaskStatus.allCases.filter(transition.allowedFrom.contains)
        if statuses.count < TaskStatus.allCases.count {
            let placeholders = statuses.enumerated().map { offset, status in
                values[":s\(offset)"] = .string(status.rawValue)
                return ":s\(offset)"
            }
            clauses.append("\(name("status")) IN (\(placeholders.joined(separator: ", ")))")
        }
        for guardClause in transition.guards {
            switch guardClause {
            case .announcementClaimable(let staleBefore):
                values[":stale"] = .int(staleBefore)
                clauses.append(
                    "attribute_not_exists(\(name("announced_at"))) AND (attribute_not_exists(\(name("claim"))) OR \(name("claim_at")) < :stale)")
            case .claimHeld(let token):
                values[":token"] = .string(token)
                clauses.append("\(name("claim")) = :token")
            case .submitFailed, .announced:
                break  // never here: read-modify-write
            case .queuedOrDispatchedBy(let message):
                values[":queued"] = .string(TaskStatus.queued.rawValue)
                values[":dispatch_message"] = .string(message)
                clauses.append("(\(name("status")) = :queued OR \(name("dispatch_message")) = :dispatch_message)")
            }
        }
        self.update = update
        self.condition = clauses.joined(separator: " AND ")
        self.names = names
        self.values = values
    }
}
