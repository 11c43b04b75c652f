import Foundation
import SDQPlatform

extension APIHandler {
    /// The longest period one usage request covers.
    static let usageMaxDays: Int64 = 366
    /// The most tasks one usage request adds up; beyond it the answer says `complete: false`.
    static let usageMaxTasks = 200_000

    /// `GET /v1/usage?from=&to=&group_by=day|pool[&tenant=]`: the caller's tasks submitted in
    /// [from, to) added up by outcome, images and GPU seconds, per UTC day (default) or pool.
    /// Read from the task-list index (tenant, submitted time) — a DynamoDB Query per page, never a
    /// scan. An operator key sees every tenant the key file names (and `anonymous`), or the one
    /// `tenant` names. `from` defaults to 30 days before `to`, `to` to now.
    func usage(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        try Self.refuseUnknownParameters(request, known: ["from", "to", "group_by", "tenant"], of: "usage")
        let to = try Self.time(request.query["to"], field: "to") ?? EpochClock.nowMillis()
        let from = try Self.time(request.query["from"], field: "from") ?? max(0, to - 30 * 86_400_000)
        guard from < to else { throw .invalid("from", "from must be before to") }
        guard to - from <= Self.usageMaxDays * 86_400_000 else {
            throw .invalid("from", "a usage request covers at most \(Self.usageMaxDays) days")
        }
        let grouping: UsageReport.Grouping
        if let text = request.query["group_by"] {
            guard let parsed = UsageReport.Grouping(rawValue: text) else {
                throw .invalid("group_by", "group_by must be \(UsageReport.Grouping.allCases.map(\.rawValue).joined(separator: " or "))")
            }
            grouping = parsed
        } else {
            grouping = .day
        }
        let tenants: [String]
        if let named = request.query["tenant"] {
            guard tenant.role == .operator else { throw .invalid("tenant", "tenant is for operator keys; a client key sees its own usage") }
            guard APIKeyring.isTenantName(named) else { throw .invalid("tenant", "not a tenant name") }
            tenants = [named]
        } else if tenant.role == .operator {
            tenants = Array(Set(keyring.entries.map(\.tenant.name) + [Tenant.anonymous.name])).sorted()
        } else {
            tenants = [tenant.name]
        }
        var report = UsageReport(grouping: grouping)
        var counted = 0
        var complete = true
        tenants: for name in tenants {
            var query = TaskListQuery(tenant: name, since: from, until: to, limit: 500)
            while true {
                let page: TaskPage
                do { page = try await context.transport.tasks.list(query) } catch { throw .unavailable("\(error)") }
                for record in page.records { report.add(record) }
                counted += page.records.count
                if counted >= Self.usageMaxTasks {
                    complete = page.next == nil && name == tenants.last
                    break tenants
                }
                guard let next = page.next else { break }
                query.after = next
            }
        }
        return .json(200, report.json(from: from, to: to, complete: complete).serialized())
    }
}
