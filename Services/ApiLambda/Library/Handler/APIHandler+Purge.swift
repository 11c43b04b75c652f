import Foundation
import SDQPlatform

extension APIHandler {
    /// `DELETE /v1/tasks/{id}?purge=true`: deletes an ended task's data — its images, stored
    /// input, preview and manifest — and leaves the record as a tombstone (status, timings, usage,
    /// idempotency key; no prompt, parameters, context or webhook secret), so a repeat of the
    /// request is still answered with this task and usage still counts it. A task that has not
    /// ended is a 409 (cancel it first); one whose ending is still being announced is a 409 to
    /// retry in a moment. Purging again is harmless (the tombstone stays, deletes find nothing).
    ///
    /// The tombstone is written before the objects are deleted: a failure in between answers 503,
    /// and the client's retry deletes what is left (objects also expire with the bucket's rules).
    func purge(_ id: String, request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        let current = try await visibleTask(id, tenant: tenant)
        guard current.status.isTerminal else {
            throw APIError(status: 409, code: "task_not_finished", message: "task \(id) is \(current.status.rawValue); cancel it before purging it", field: "id")
        }
        let tombstone = try await writeTombstone(current)
        try await deleteObjects(of: current)
        let owner = current.tenant ?? Tenant.anonymous.name
        logger.notice("task purged", metadata: ["task_id": "\(id)", "tenant": "\(owner)", "by": "\(tenant.name)"])
        await audit("task.purge", by: tenant, target: id, detail: "owner \(owner)", request: request)
        return try await documentResponse(200, tombstone, request: request)
    }

    /// Applies ``TaskEvent/purged(at:)``; a task whose ending is not announced yet is a 409.
    private func writeTombstone(_ record: TaskRecord) async throws(APIError) -> TaskRecord {
        let outcome: UpdateOutcome
        do { outcome = try await context.transport.tasks.apply(.purged(at: EpochClock.nowMillis()), to: record.id) } catch {
            throw .unavailable("\(error)")
        }
        switch outcome {
        case .applied(let tombstone): return tombstone
        case .notFound: throw .notFound(record.id)
        case .conflict:
            throw APIError(
                status: 409, code: "task_finishing", message: "task \(record.id) is still being finalised; purge it again in a few seconds",
                field: "id")
        }
    }

    /// Every object the task made: images, the input the API stored, previews, the manifest.
    static func objectKeys(of record: TaskRecord) -> [String] {
        var keys = record.images.map(\.key)
        keys.append("inputs/\(record.id)/init-0")
        if let preview = record.previewKey { keys.append(preview) }
        keys += ["png", "jpg", "webp"].map { "previews/\(record.id)/preview.\($0)" }
        keys.append(record.manifestKey ?? "results/\(record.id)/manifest.json")
        return Array(Set(keys)).sorted()
    }

    private func deleteObjects(of record: TaskRecord) async throws(APIError) {
        for key in Self.objectKeys(of: record) {
            do { try await context.transport.objects.delete(key: key) } catch { throw .unavailable("\(error)") }
        }
    }

    /// `DELETE /v1/tenants/{name}/tasks` (operator keys only): purges every ended task of a
    /// tenant and cancels its unfinished ones, which the next call purges once they have ended.
    /// Answers the counts; `pending` > 0 means "call again". Walks the task-list index.
    func purgeTenant(_ name: String, request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        guard tenant.role == .operator else {
            throw APIError(status: 403, code: "operator_only", message: "purging a tenant needs an operator key")
        }
        guard APIKeyring.isTenantName(name) else { throw .invalid("name", "not a tenant name") }
        var query = TaskListQuery(tenant: name, limit: 100)
        var purged = 0
        var cancelled = 0
        var pending = 0
        while true {
            let page: TaskPage
            do { page = try await context.transport.tasks.list(query) } catch { throw .unavailable("\(error)") }
            for record in page.records {
                if record.status.isTerminal {
                    if record.purgedAt != nil { continue }
                    guard record.announcedAt != nil else {
                        pending += 1
                        continue
                    }
                    _ = try await writeTombstone(record)
                    try await deleteObjects(of: record)
                    purged += 1
                } else {
                    let message = "cancelled: the tenant's data is being purged"
                    if case .applied = try await applyCancel(record.id, message: message) { cancelled += 1 }
                    pending += 1
                }
            }
            guard let next = page.next else { break }
            query.after = next
        }
        logger.notice(
            "tenant purged", metadata: ["tenant": "\(name)", "by": "\(tenant.name)", "purged": "\(purged)", "pending": "\(pending)"])
        await audit(
            "tenant.purge", by: tenant, target: name, detail: "purged \(purged), cancelled \(cancelled), pending \(pending)", request: request)
        let body: JSONValue = .object([
            "tenant": .string(name), "purged": .number(Double(purged)), "cancelled": .number(Double(cancelled)),
            "pending": .number(Double(pending)),
        ])
        return .json(200, body.serialized())
    }
}
