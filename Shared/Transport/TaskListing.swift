import Foundation
import SDQCore

/// What `GET /v1/tasks` asks the store for: one tenant's tasks, newest first, optionally filtered.
public struct TaskListQuery: Sendable, Equatable {
    /// The owner (``TaskRecord/tenant``; records without one belong to `anonymous`).
    public var tenant: String
    public var status: TaskStatus?
    public var pool: String?
    /// Submitted at or after this time, epoch milliseconds.
    public var since: Int64?
    /// Submitted before this time, epoch milliseconds.
    public var until: Int64?
    /// At most this many records.
    public var limit: Int
    /// Where the previous page ended (its ``TaskPage/next``).
    public var after: TaskListPosition?

    public init(
        tenant: String, status: TaskStatus? = nil, pool: String? = nil, since: Int64? = nil, until: Int64? = nil, limit: Int = 50,
        after: TaskListPosition? = nil
    ) {
        self.tenant = tenant
        self.status = status
        self.pool = pool
        self.since = since
        self.until = until
        self.limit = limit
        self.after = after
    }

    /// Whether `record` passes the filters (the key range is the store's business).
    public func admits(_ record: TaskRecord) -> Bool {
        (status == nil || record.status == status) && (pool == nil || record.pool == pool)
    }
}

/// A place in a tenant's task list: the last record a page returned. Pages continue strictly
/// after it in (submitted time, id) descending order, so records inserted meanwhile (always newer)
/// neither repeat nor shift later pages.
public struct TaskListPosition: Sendable, Equatable, Codable {
    public var submittedAt: Int64
    public var id: String

    public init(submittedAt: Int64, id: String) {
        self.submittedAt = submittedAt
        self.id = id
    }

    public init(_ record: TaskRecord) {
        self.init(submittedAt: record.timings.submittedAt ?? 0, id: record.id)
    }

    enum CodingKeys: String, CodingKey {
        case submittedAt = "s", id = "i"
    }

    /// The opaque cursor a client receives: base64url of a small JSON object.
    public var cursor: String {
        let data = (try? JSONEncoder().encode(self)) ?? Data()
        return data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// The position a cursor names; nil when it is not one this API issued.
    public init?(cursor: String) {
        guard cursor.utf8.count <= 512 else { return nil }
        var text = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        guard let data = Data(base64Encoded: text), let position = try? JSONDecoder().decode(Self.self, from: data),
            TaskID.isWellFormed(position.id)
        else { return nil }
        self = position
    }
}

/// One page of a task list.
public struct TaskPage: Sendable, Equatable {
    public var records: [TaskRecord]
    /// Where the next page starts; nil on the last page.
    public var next: TaskListPosition?

    public init(records: [TaskRecord], next: TaskListPosition?) {
        self.records = records
        self.next = next
    }
}
