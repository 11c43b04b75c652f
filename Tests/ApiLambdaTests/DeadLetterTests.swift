@testable import ApiLambda
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// `GET /v1/dead-letters` and `POST /v1/dead-letters/redrive`: operators see what each dead-letter
/// queue holds without moving it, and move it back to the queue it came from.
@Suite struct DeadLetterTests {
    static func redrive(_ harness: APIHandlerTests.Harness, _ body: String, key: String = "k-ops") async -> APIResponse {
        await harness.handler.handle(
            APIRequest(method: "POST", path: "/v1/dead-letters/redrive", headers: FleetTests.auth(key), body: Data(body.utf8)))
    }

    @Test func operatorsInspectAndRedriveDeadLetters() async throws {
        let harness = try await APIHandlerTests.Harness.make(keyFile: FleetTests.keyFile)
        let names = harness.fixture.context.names
        let lane = names.poolQueue("default"), dlq = names.deadLetterQueue(of: lane)
        var task = Sdq_V1_GenerationTask()
        task.id = "t-dead-1"
        task.tenant = "alice"
        task.pool = "default"
        try await QueueChannel<Sdq_V1_GenerationTask>(harness.fixture.queue(dlq)).send(task)
        task.id = "t-dead-2"
        try await QueueChannel<Sdq_V1_GenerationTask>(harness.fixture.queue(dlq)).send(task)

        // Clients may not look.
        let refused = await harness.get("/v1/dead-letters", headers: FleetTests.auth("k-alice"))
        #expect(refused.status == 403 && APIHandlerTests.error(refused).code == "operator_only")
        #expect(await Self.redrive(harness, #"{"queue": "\#(dlq)"}"#, key: "k-alice").status == 403)

        // Looking twice sees the same two, and moves nothing.
        for _ in 0..<2 {
            let listed = try JSONValue.parse(await harness.get("/v1/dead-letters?queue=\(dlq)", headers: FleetTests.auth("k-ops")).body)
            let queues = try #require(listed["queues"]?.arrayValue)
            #expect(queues.count == 1 && queues[0]["source"]?.stringValue == lane && queues[0]["depth"]?.numberValue == 2)
            let messages = try #require(queues[0]["messages"]?.arrayValue)
            #expect(Set(messages.compactMap { $0["task_id"]?.stringValue }) == ["t-dead-1", "t-dead-2"])
            #expect(messages.allSatisfy { $0["kind"]?.stringValue == "generation_task" && $0["tenant"]?.stringValue == "alice" })
        }
        let all = try JSONValue.parse(await harness.get("/v1/dead-letters", headers: FleetTests.auth("k-ops")).body)
        #expect(all["queues"]?.arrayValue?.count == harness.fixture.context.topology.queues.filter { $0.deadLetterQueue != nil }.count)

        // Bad requests change nothing.
        for (body, field) in [
            (#"{"queue": "nope"}"#, "queue"), (#"{"queue": "\#(lane)"}"#, "queue"), (#"{"queue": "\#(dlq)", "max": 0}"#, "max"),
            (#"{"queue": "\#(dlq)", "extra": 1}"#, "extra"), (#"{}"#, "queue"),
        ] {
            let bad = await Self.redrive(harness, body)
            #expect(bad.status == 400 && APIHandlerTests.error(bad).field == field, "\(body)")
        }
        #expect(await harness.get("/v1/dead-letters?queue=nope", headers: FleetTests.auth("k-ops")).status == 400)
        #expect(try await harness.fixture.queue(dlq).depth().visible == 2)

        // One at a time, then the rest.
        let one = try JSONValue.parse(await Self.redrive(harness, #"{"queue": "\#(dlq)", "max": 1}"#).body)
        #expect(one["redriven"]?.numberValue == 1)
        let rest = try JSONValue.parse(await Self.redrive(harness, #"{"queue": "\#(dlq)"}"#).body)
        #expect(rest["redriven"]?.numberValue == 1)
        #expect(try await harness.fixture.queue(dlq).depth() == QueueDepth(visible: 0, inFlight: 0))
        let back = try await harness.fixture.queue(lane).receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil)
        let ids = try back.map { try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: $0.body, attributes: $0.attributes).id }
        #expect(Set(ids) == ["t-dead-1", "t-dead-2"])
    }
}
