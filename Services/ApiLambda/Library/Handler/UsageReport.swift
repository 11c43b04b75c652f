import Foundation
import SDQPlatform

/// Tasks added up by tenant and day or pool: counts by outcome, images and GPU seconds (each
/// task's runtime window, ``TaskRecord/gpuMillis``). Pure; `GET /v1/usage` feeds it the pages of
/// the task-list index.
public struct UsageReport: Sendable {
    /// How tasks are grouped besides their tenant.
    public enum Grouping: String, Sendable, CaseIterable {
        /// By the UTC day the task was submitted.
        case day
        /// By the pool that ran (or would run) it.
        case pool
    }

    /// The figures of one group.
    public struct Figures: Sendable, Equatable {
        public var tasks = 0
        public var outcomes: [TaskStatus: Int] = [:]
        public var images = 0
        public var gpuMillis: Int64 = 0

        mutating func add(_ record: TaskRecord) {
            tasks += 1
            outcomes[record.status, default: 0] += 1
            images += record.images.count
            gpuMillis += record.gpuMillis ?? 0
        }

        mutating func add(_ other: Figures) {
            tasks += other.tasks
            for (status, count) in other.outcomes { outcomes[status, default: 0] += count }
            images += other.images
            gpuMillis += other.gpuMillis
        }

        var json: [String: JSONValue] {
            [
                "tasks": .number(Double(tasks)),
                "outcomes": .object(Dictionary(uniqueKeysWithValues: TaskStatus.allCases.map {
                    ($0.rawValue, JSONValue.number(Double(outcomes[$0] ?? 0)))
                })),
                "images": .number(Double(images)),
                "gpu_seconds": .number(Double(gpuMillis) / 1000),
            ]
        }
    }

    struct Key: Hashable, Comparable {
        var tenant: String
        var group: String
        static func < (a: Key, b: Key) -> Bool { (a.tenant, a.group) < (b.tenant, b.group) }
    }

    public let grouping: Grouping
    private(set) var groups: [Key: Figures] = [:]

    public init(grouping: Grouping) { self.grouping = grouping }

    /// Adds one task.
    public mutating func add(_ record: TaskRecord) {
        let group: String
        switch grouping {
        case .day: group = Self.day(record.timings.submittedAt ?? 0)
        case .pool: group = record.pool
        }
        groups[Key(tenant: record.tenant ?? Tenant.anonymous.name, group: group), default: Figures()].add(record)
    }

    /// The figures of every group, and all of them together.
    public var totals: Figures {
        groups.values.reduce(into: Figures()) { $0.add($1) }
    }

    /// The answer's body: `groups` (sorted by tenant, then day or pool) and `totals`.
    public func json(from: Int64, to: Int64, complete: Bool) -> JSONValue {
        let rows: [JSONValue] = groups.keys.sorted().map { key in
            var row = groups[key]?.json ?? [:]
            row["tenant"] = .string(key.tenant)
            row[grouping.rawValue] = .string(key.group)
            return .object(row)
        }
        return .object([
            "from": .string(Self.timestamp(from)), "to": .string(Self.timestamp(to)), "group_by": .string(grouping.rawValue),
            "groups": .array(rows), "totals": .object(totals.json), "complete": .bool(complete),
        ])
    }

    /// `YYYY-MM-DD` of an epoch-millisecond time, UTC.
    static func day(_ millis: Int64) -> String {
        String(timestamp(millis).prefix(10))
    }

    static func timestamp(_ millis: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }
}
