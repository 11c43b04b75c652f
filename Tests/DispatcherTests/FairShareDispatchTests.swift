import Dispatcher
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// The dispatcher's holding of tasks beyond a lane's depth (fair share), on the embedded
/// transport. The two-tenant run with a worker is `SdqTests/FairShareTests`.
@Suite struct FairShareDispatchTests {
    static func pools(laneDepth: Int) throws -> PoolConfiguration {
        var pools = try fastPools()
        pools.fairShare = FairShareSettings(laneDepth: laneDepth)
        return pools
    }

    static func enqueue(_ fixture: EmbeddedFixture, tenant: String, count: Int) async throws -> [String] {
        var ids: [String] = []
        for _ in 0..<count {
            var task = DispatcherTests.task()
            task.tenant = tenant
            _ = try await fixture.transport.tasks.create(makeRecord(id: task.id, status: .queued))
            try await send(task, to: fixture)
            ids.append(task.id)
        }
        return ids
    }

    static func send(_ task: Sdq_V1_GenerationTask, to fixture: EmbeddedFixture) async throws {
        let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
        try await fixture.queue(fixture.context.names.dispatchQueue).send(body: encoded.body, attributes: encoded.attributes)
    }

    /// Six tasks, a lane two deep, no worker: two go to the lane, four wait `queued` with their
    /// messages held (leases renewed, so never received twice); a worker taking one lets one
    /// more through; a second message of a held task is dropped; a graceful stop hands the held
    /// ones back to the dispatch queue at once.
    @Test func tasksBeyondTheLaneDepthWaitQueuedAndGoBackWhenTheDispatcherStops() async throws {
        let fixture = try await EmbeddedFixture.make(pools: try Self.pools(laneDepth: 2))
        let names = fixture.context.names
        let ids = try await Self.enqueue(fixture, tenant: "t", count: 6)
        var again = DispatcherTests.task()
        again.id = ids[5]
        again.tenant = "t"
        try await Self.send(again, to: fixture)
        var dispatcher = Dispatcher(context: fixture.context, logger: testLogger(), receiveWait: .milliseconds(100))
        dispatcher.holdLease = .seconds(3)
        dispatcher.refillInterval = .milliseconds(100)
        let lane = fixture.queue(names.poolQueue("default"))
        let dispatchQueue = fixture.queue(names.dispatchQueue)
        @Sendable func statuses() async throws -> [TaskStatus?] {
            var statuses: [TaskStatus?] = []
            for id in ids { statuses.append(try await fixture.transport.tasks.get(id: id)?.status) }
            return statuses
        }
        try await whileRunning([dispatcher]) { _ in
            #expect(await eventually { try await lane.depth().visible == 2 })
            // Two leases long: held messages are renewed, not handed out again.
            try await Task.sleep(for: .seconds(4))
            #expect(try await lane.depth().visible == 2)
            #expect(try await statuses() == [.dispatched, .dispatched, .queued, .queued, .queued, .queued])
            #expect(try await dispatchQueue.depth() == QueueDepth(visible: 0, inFlight: 4))
            // A worker takes one: the lane is refilled from what is held.
            let taken = try await lane.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(60))
            try await lane.delete(receiptHandle: try #require(taken.first).receiptHandle)
            #expect(await eventually { try await statuses().filter { $0 == .dispatched }.count == 3 })
            #expect(try await lane.depth().visible == 2)
        }
        // Stopped: the three still held are visible again at once, each received twice only
        // (by the hold, and now).
        let back = try await dispatchQueue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
        let backIDs = try back.map { try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: $0.body, attributes: $0.attributes).id }
        #expect(Set(backIDs) == Set(ids[3...]))
        #expect(back.allSatisfy { $0.receiveCount == 2 })
        #expect(try await statuses()[3...].allSatisfy { $0 == .queued })
    }

    /// Fair share off (`lane_depth: 0`): every task goes to its lane at once, as before.
    @Test func laneDepthZeroSendsEverythingAtOnce() async throws {
        let fixture = try await EmbeddedFixture.make(pools: try Self.pools(laneDepth: 0))
        _ = try await Self.enqueue(fixture, tenant: "t", count: 6)
        let dispatcher = Dispatcher(context: fixture.context, logger: testLogger(), receiveWait: .milliseconds(100))
        try await whileRunning([dispatcher]) { _ in
            #expect(await eventually { try await fixture.queue(fixture.context.names.poolQueue("default")).depth().visible == 6 })
        }
    }

    @Test(arguments: [("{lane_depth: -1}", "fair_share.lane_depth"), ("{hold: 0}", "fair_share.hold"), ("{hold: 200000}", "fair_share.hold")])
    func badSettingsAreConfigurationErrorsNamingTheField(_ settings: String, _ field: String) {
        let yaml = "pools:\n  - {name: default, runtime: emulator, models: [emulator-v1]}\nfair_share: \(settings)\n"
        #expect(throws: ConfigurationError.self) { try PoolConfiguration.parse(yaml: yaml) }
        do { _ = try PoolConfiguration.parse(yaml: yaml) } catch { #expect(error.field == field) }
        let good = try? PoolConfiguration.parse(yaml: "pools:\n  - {name: default, runtime: emulator, models: [emulator-v1]}\nfair_share: {lane_depth: 4}\n")
        #expect(good?.fairShare == FairShareSettings(laneDepth: 4, hold: 10_000))
        #expect(PoolConfiguration.builtIn.fairShare.isEnabled)
    }
}
