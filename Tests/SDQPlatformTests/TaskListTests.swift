import Foundation
@testable import SDQPlatform
@testable import SDQStack
import SDQTestSupport
import Testing

/// `TaskStore.list` on both stores: one tenant's tasks newest first, pages that continue where
/// the last ended while new tasks arrive, filters, and never another tenant's task.
@Suite struct TaskListTests {
    /// Creates a task of `tenant` submitted at `at`.
    static func create(_ store: any TaskStore, tenant: String, at: Int64, pool: String = "default") async throws -> TaskRecord {
        var record = makeRecord(id: TaskID.generate(now: at), pool: pool)
        record.tenant = tenant
        record.timings.submittedAt = at
        _ = try await store.create(record)
        return record
    }

    @Test(arguments: TransportKind.available)
    func pagesCrossABoundaryWhileTasksArriveAndStayWithinTheTenant(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let base = EpochClock.nowMillis() - 60_000
        var mine: [TaskRecord] = []
        for offset in 0..<7 { mine.append(try await Self.create(store, tenant: "acme", at: base + Int64(offset) * 10)) }
        // Two tasks in the same millisecond: the id breaks the tie.
        mine.append(try await Self.create(store, tenant: "acme", at: base + 60))
        let theirs = try await Self.create(store, tenant: "globex", at: base + 25)
        let expected = mine.sorted { ($0.timings.submittedAt!, $0.id) > ($1.timings.submittedAt!, $1.id) }.map(\.id)

        var seen: [String] = []
        var query = TaskListQuery(tenant: "acme", limit: 3)
        var pages = 0
        while true {
            let page = try await store.list(query)
            pages += 1
            seen += page.records.map(\.id)
            // New tasks arrive between pages: they are newer, so later pages are not shifted.
            _ = try await Self.create(store, tenant: "acme", at: EpochClock.nowMillis() + Int64(pages))
            guard let next = page.next else { break }
            #expect(TaskListPosition(cursor: next.cursor) == next, "the cursor carries the position")
            query.after = next
        }
        #expect(seen == expected, "each task once, newest first, across the page boundaries")
        #expect(pages == 3)
        let other = try await store.list(TaskListQuery(tenant: "globex", limit: 50))
        #expect(other.records.map(\.id) == [theirs.id], "another tenant's list holds only its own")
        #expect(other.next == nil)
    }

    @Test(arguments: TransportKind.available)
    func filtersByStatusPoolAndTime(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let base = EpochClock.nowMillis() - 60_000
        let a = try await Self.create(store, tenant: "acme", at: base)
        let b = try await Self.create(store, tenant: "acme", at: base + 10, pool: "other")
        let c = try await Self.create(store, tenant: "acme", at: base + 20)
        _ = try await store.apply(.cancelled(at: base + 30, message: "no"), to: c.id)
        #expect(try await store.list(TaskListQuery(tenant: "acme", status: .cancelled)).records.map(\.id) == [c.id])
        #expect(try await store.list(TaskListQuery(tenant: "acme", status: .queued)).records.map(\.id) == [b.id, a.id])
        #expect(try await store.list(TaskListQuery(tenant: "acme", pool: "other")).records.map(\.id) == [b.id])
        #expect(try await store.list(TaskListQuery(tenant: "acme", since: base + 10)).records.map(\.id) == [c.id, b.id])
        #expect(try await store.list(TaskListQuery(tenant: "acme", until: base + 10)).records.map(\.id) == [a.id])
        // A filter that leaves a page short still pages on from where the index was read.
        var query = TaskListQuery(tenant: "acme", status: .queued, limit: 1)
        let first = try await store.list(query)
        query.after = first.next
        let second = try await store.list(query)
        #expect(first.records.map(\.id) + second.records.map(\.id) == [b.id, a.id])
    }

    /// The embedded list walks the `tasks_by_tenant` index, never the whole table.
    @Test func theEmbeddedListWalksItsIndex() async throws {
        let fixture = try await StackFixture.make(.embedded)
        let store = try #require(fixture.transport.tasks as? EmbeddedTaskStore)
        for query in [
            TaskListQuery(tenant: "acme"), TaskListQuery(tenant: "acme", status: .running, since: 5, until: 10),
            TaskListQuery(tenant: "acme", after: TaskListPosition(submittedAt: 9, id: TaskID.generate())),
        ] {
            let plan = try await store.listPlan(query).joined(separator: "; ")
            #expect(plan.contains("USING INDEX tasks_by_tenant"), "\(plan)")
            #expect(!plan.contains("SCAN tasks") || plan.contains("USING INDEX"), "\(plan)")
            #expect(!plan.contains("TEMP B-TREE"), "sorted by the index, not afterwards: \(plan)")
        }
    }

    @Test func cursorsThatTheAPIDidNotIssueAreRefused() {
        #expect(TaskListPosition(cursor: "not-a-cursor") == nil)
        #expect(TaskListPosition(cursor: String(repeating: "A", count: 600)) == nil)
        let position = TaskListPosition(submittedAt: 12, id: TaskID.generate())
        #expect(TaskListPosition(cursor: position.cursor) == position)
    }
}
