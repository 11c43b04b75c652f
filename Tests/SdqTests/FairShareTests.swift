import ApiLambda
import Dispatcher
import Foundation
import InferenceService
import ResultWriter
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import Testing

/// Fair share at dispatch, end to end: two tenants through the API, the real dispatcher, one
/// worker on the emulator and the result-writer. Tenant `big` queues a backlog, then `small`
/// submits a few; with fair share the small tenant's tasks all finish while most of the big
/// backlog still waits, and without it they wait behind all of it. Both tenants' waits (from
/// submission to the start the worker recorded; the worker starts once all are submitted) are
/// printed for both runs.
@Suite struct FairShareTests {
    static let keyFile = """
        keys:
          - {name: big, key: k-big}
          - {name: small, key: k-small}
        """

    struct Run {
        var smallWaits: [Int64] = []
        var bigWaits: [Int64] = []
        var bigNotStarted = 0
        var bigTotal = 0

        static func describe(_ waits: [Int64]) -> String {
            guard !waits.isEmpty else { return "none started" }
            let sorted = waits.sorted()
            return "\(waits.count) started, wait mean \(waits.reduce(0, +) / Int64(waits.count)) ms, "
                + "median \(sorted[sorted.count / 2]) ms, max \(sorted.last!) ms"
        }
    }

    static func run(_ kind: TransportKind, fairShare: Bool, big: Int = 30, small: Int = 5) async throws -> Run {
        var pools = try fastPools(visibilitySeconds: 30)
        pools.fairShare = FairShareSettings(laneDepth: fairShare ? 2 : 0)
        let fixture = try await StackFixture.make(kind, pools: pools)
        let handler = APIHandler(
            context: fixture.context, logger: testLogger(), keyring: try APIKeyring.parse(file: keyFile, source: "keys.yaml"))
        var dispatcher = Dispatcher(context: fixture.context, logger: testLogger(), receiveWait: .milliseconds(200))
        dispatcher.refillInterval = .milliseconds(100)
        let services: [any Service] = [
            dispatcher, ResultWriter(context: fixture.context, logger: testLogger(), receiveWait: .milliseconds(200)),
        ]
        // The worker starts once everything is submitted, so the order it runs them in does not
        // depend on how fast the submissions were.
        let worker = InferenceWorker(
            context: fixture.context, runtime: EmulatorRuntime(stepDelay: .milliseconds(20)),
            configuration: InferenceConfiguration(pool: "default", receiveWait: .milliseconds(200), progressInterval: .seconds(5)),
            logger: testLogger())
        @Sendable func submit(_ key: String, _ index: Int) async throws -> String {
            let response = await handler.handle(APIRequest(
                method: "POST", path: "/v1/tasks", headers: ["Authorization": "Bearer \(key)"],
                body: Data(#"{"prompt": "\#(key) \#(index)", "steps": 10, "width": 64, "height": 64}"#.utf8)))
            #expect(response.status == 202)
            return try #require(try JSONValue.parse(response.body)["id"]?.stringValue)
        }
        return try await whileRunning(services) { _ in
            var bigIDs: [String] = [], submittedSmall: [String] = []
            for index in 0..<big { bigIDs.append(try await submit("k-big", index)) }
            for index in 0..<small { submittedSmall.append(try await submit("k-small", index)) }
            let smallIDs = submittedSmall
            let store = fixture.transport.tasks
            // The dispatcher has seen them all (on their lane, or held).
            #expect(await eventually { try await fixture.queue(fixture.names.dispatchQueue).depth().visible == 0 })
            try await whileRunning([worker]) { _ in
                #expect(await eventually(timeout: .seconds(120)) {
                    for id in smallIDs where try await store.get(id: id)?.status.isTerminal != true { return false }
                    return true
                })
            }
            var run = Run(bigTotal: big)
            for id in smallIDs {
                let record = try #require(try await store.get(id: id))
                #expect(record.status == .succeeded)
                if let started = record.timings.startedAt, let submitted = record.timings.submittedAt { run.smallWaits.append(started - submitted) }
            }
            for id in bigIDs {
                let record = try #require(try await store.get(id: id))
                if let started = record.timings.startedAt, let submitted = record.timings.submittedAt {
                    run.bigWaits.append(started - submitted)
                } else {
                    run.bigNotStarted += 1
                }
            }
            return run
        }
    }

    @Test(arguments: TransportKind.available)
    func theSmallTenantFinishesWhileTheBigBacklogIsStillWorked(_ kind: TransportKind) async throws {
        let fair = try await Self.run(kind, fairShare: true)
        let fifo = try await Self.run(kind, fairShare: false)
        for (label, run) in [("fair share on (lane_depth 2)", fair), ("fair share off", fifo)] {
            print("""
                fair-share run (\(kind), one worker, \(run.bigTotal) tasks of tenant big then \(run.smallWaits.count) of small), \(label):
                  small: \(Run.describe(run.smallWaits))
                  big:   \(Run.describe(run.bigWaits)); \(run.bigNotStarted) not started when small's last ended
                """)
        }
        #expect(fair.smallWaits.count == 5 && fifo.smallWaits.count == 5)
        // Fair: small's five go in turn with big's, so most of big's backlog is still waiting.
        #expect(fair.bigNotStarted >= fair.bigTotal / 3)
        // First come first served: small waited behind (nearly) all of it.
        #expect(fifo.bigNotStarted <= 2)
        let fairMean = fair.smallWaits.reduce(0, +) / 5, fifoMean = fifo.smallWaits.reduce(0, +) / 5
        #expect(fairMean * 2 < fifoMean)
    }
}
