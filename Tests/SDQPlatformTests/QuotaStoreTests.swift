import Foundation
@testable import SDQPlatform
import SDQTestSupport
import Testing

/// The submission rate as the generic cell rate algorithm decides it (plain numbers, no clock).
@Suite struct SubmissionRateTests {
    @Test func aBurstIsAllowedThenOneSubmissionPerInterval() {
        let rate = SubmissionRate(perMinute: 6, burst: 3)  // one every 10 s, three at once
        var stored: Int64?
        var remaining: [Int] = []
        for _ in 0..<3 {
            let decision = rate.decide(arrivalTime: stored, now: 1_000_000)
            #expect(decision.allowed)
            remaining.append(decision.remaining)
            stored = decision.arrivalTime
        }
        #expect(remaining == [2, 1, 0])
        let refused = rate.decide(arrivalTime: stored, now: 1_000_000)
        #expect(!refused.allowed)
        #expect(refused.retryAfterSeconds == 10)
        #expect(refused.resetSeconds == 30)
        #expect(refused.arrivalTime == stored, "a refusal changes nothing")
        #expect(!rate.decide(arrivalTime: stored, now: 1_009_000).allowed)
        let later = rate.decide(arrivalTime: stored, now: 1_010_000)
        #expect(later.allowed && later.remaining == 0)
        // After a quiet spell the bucket is full again, never fuller.
        let rested = rate.decide(arrivalTime: later.arrivalTime, now: 2_000_000)
        #expect(rested.allowed && rested.remaining == 2)
        #expect(rate.windowSeconds == 30)
    }

    @Test func fractionalRatesRefillSlowly() {
        let rate = SubmissionRate(perMinute: 0.5, burst: 1)  // one every two minutes
        let first = rate.decide(arrivalTime: nil, now: 0)
        #expect(first.allowed)
        let second = rate.decide(arrivalTime: first.arrivalTime, now: 60_000)
        #expect(!second.allowed && second.retryAfterSeconds == 60)
    }
}

/// Quotas kept in the task store, on both transports: the in-flight count moves with the one
/// terminal transition, and the rate and the count hold under concurrent writers.
@Suite struct QuotaStoreTests {
    func slotted(_ tenant: String, key: String? = nil) -> TaskRecord {
        var record = makeRecord()
        record.tenant = tenant
        record.inFlightSlot = tenant
        record.idempotencyKey = key
        return record
    }

    static let claim = AnnouncementClaim(token: "w", at: EpochClock.nowMillis(), manifestKey: "results/t/manifest.json")

    @Test(arguments: TransportKind.available)
    func aSlotIsTakenAtCreationAndGivenBackExactlyOnce(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let first = slotted("alice", key: "alice|k1")
        let second = slotted("alice")
        #expect(try await store.create(first, inFlightLimit: 2) == .created(first))
        #expect(try await store.create(second, inFlightLimit: 2) == .created(second))
        let third = slotted("alice")
        #expect(try await store.create(third, inFlightLimit: 2) == .inFlightLimitReached(limit: 2))
        #expect(try await store.get(id: third.id) == nil, "a refused task is not stored")
        // A repeat of an accepted request is the same task and takes no slot.
        var repeated = slotted("alice", key: "alice|k1")
        repeated.id = TaskID.generate()
        #expect(try await store.create(repeated, inFlightLimit: 2) == .existing(first))
        #expect(try await store.inFlight(tenant: "alice") == 2)
        // Another tenant has its own count; a task without a slot touches none.
        #expect(try await store.create(slotted("bob"), inFlightLimit: 1) != .inFlightLimitReached(limit: 1))
        _ = try await store.create(makeRecord())
        #expect(try await store.inFlight(tenant: "bob") == 1)

        let done = TaskConclusion(status: .succeeded, worker: "w1", pool: "default", attempts: 1, finishedAt: EpochClock.nowMillis())
        guard case .applied = try await store.apply(.started(worker: "w1", at: 1), to: first.id) else { throw Failure("not started") }
        #expect(try await store.inFlight(tenant: "alice") == 2, "running still holds the slot")
        guard case .applied = try await store.apply(.finished(done, claim: Self.claim), to: first.id) else { throw Failure("not finished") }
        #expect(try await store.inFlight(tenant: "alice") == 1)
        // A duplicate result and a late cancel are refused by the lifecycle: no second return.
        guard case .conflict = try await store.apply(.finished(done, claim: Self.claim), to: first.id) else { throw Failure("applied twice") }
        guard case .conflict = try await store.apply(.cancelled(at: 1, message: "late"), to: first.id) else { throw Failure("cancelled") }
        #expect(try await store.inFlight(tenant: "alice") == 1)
        guard case .applied = try await store.apply(.cancelled(at: 1, message: "c"), to: second.id) else { throw Failure("not cancelled") }
        #expect(try await store.inFlight(tenant: "alice") == 0)

        // A failed publish gives the slot back; the repeat that queues the task again takes it.
        #expect(try await store.create(third, inFlightLimit: 2) == .created(third))
        guard case .applied = try await store.apply(.submitFailed, to: third.id) else { throw Failure("not failed") }
        #expect(try await store.inFlight(tenant: "alice") == 0)
        guard case .applied = try await store.apply(.resubmitted, to: third.id) else { throw Failure("not resubmitted") }
        #expect(try await store.inFlight(tenant: "alice") == 1)
    }

    @Test(arguments: TransportKind.available)
    func concurrentSubmissionsAndEndingsKeepTheCountExact(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let records = (0..<16).map { _ in slotted("carol") }
        let outcomes = try await withThrowingTaskGroup(of: CreateOutcome.self) { group in
            for record in records { group.addTask { try await store.create(record, inFlightLimit: 5) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let created = outcomes.compactMap { outcome -> TaskRecord? in if case .created(let r) = outcome { r } else { nil } }
        #expect(created.count == 5)
        #expect(outcomes.filter { $0 == .inFlightLimitReached(limit: 5) }.count == 11)
        #expect(try await store.inFlight(tenant: "carol") == 5)
        // Every task ends twice at once (a duplicate result beside a cancel): each slot comes back once.
        let done = TaskConclusion(status: .succeeded, finishedAt: EpochClock.nowMillis())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for record in created {
                group.addTask { _ = try await store.apply(.finished(done, claim: Self.claim), to: record.id) }
                group.addTask { _ = try await store.apply(.cancelled(at: 1, message: "c"), to: record.id) }
            }
            try await group.waitForAll()
        }
        #expect(try await store.inFlight(tenant: "carol") == 0)
    }

    @Test(arguments: TransportKind.available)
    func theRateHoldsForConcurrentTakers(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let rate = SubmissionRate(perMinute: 1, burst: 4)
        let now = EpochClock.nowMillis()
        let decisions = try await withThrowingTaskGroup(of: RateDecision.self) { group in
            for _ in 0..<12 { group.addTask { try await store.takeSubmission(tenant: "dave", rate: rate, now: now) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(decisions.filter(\.allowed).count == 4)
        #expect(decisions.filter(\.allowed).map(\.remaining).sorted() == [0, 1, 2, 3])
        #expect(decisions.filter { !$0.allowed }.allSatisfy { $0.retryAfterSeconds == 60 })
        // Another tenant's bucket is its own.
        #expect(try await store.takeSubmission(tenant: "erin", rate: rate, now: now).allowed)
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
