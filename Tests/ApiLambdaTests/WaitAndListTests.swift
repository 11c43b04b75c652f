import Foundation
@testable import ApiLambda
import SDQPlatform
import SDQTestSupport
import Testing

/// `Prefer: wait=N` on submit and status, and `GET /v1/tasks`.
@Suite struct WaitAndListTests {
    typealias Harness = APIHandlerTests.Harness

    static func harness(apiKeys: [String] = []) async throws -> Harness {
        var harness = try await Harness.make(apiKeys: apiKeys)
        harness.handler.eventTiming.pollInterval = .milliseconds(50)
        return harness
    }

    /// Ends the first task of the open API's tenant that appears, as a worker and result-writer would.
    static func finishTheNextTask(in store: any TaskStore) -> Task<String?, Never> {
        Task {
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                if let record = try? await store.list(TaskListQuery(tenant: "anonymous", limit: 1)).records.first {
                    try? await Task.sleep(for: .milliseconds(200))
                    try? await EventStreamTests.finish(record.id, in: store)
                    return record.id
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return nil
        }
    }

    @Test func aSubmitThatAsksToWaitGetsTheFinalDocumentWhenTheTaskEndsInTime() async throws {
        let harness = try await Self.harness()
        let finisher = Self.finishTheNextTask(in: harness.fixture.context.transport.tasks)
        let response = await harness.post(#"{"prompt": "quick"}"#, headers: ["prefer": "wait=10"])
        let id = await finisher.value
        #expect(response.status == 200)
        #expect(response.headers["preference-applied"] == "wait=10")
        #expect(response.headers["location"] == "/v1/tasks/\(id ?? "")")
        let document = try JSONDecoder().decode(TaskDocument.self, from: response.body)
        #expect(document.status == .succeeded && document.images.count == 1)
    }

    @Test func aWaitThatRunsOutAnswersAsWithoutIt() async throws {
        var harness = try await Self.harness()
        harness.handler.eventTiming.maxWait = .seconds(1)
        let started = ContinuousClock.now
        let submitted = await harness.post(#"{"prompt": "slow"}"#, headers: ["prefer": "respond-async, wait=30"])
        #expect(ContinuousClock.now - started >= .seconds(1))
        #expect(submitted.status == 202)
        #expect(submitted.headers["preference-applied"] == "wait=1", "capped by the API's limit")
        let id = try JSONDecoder().decode(TaskDocument.self, from: submitted.body).id

        let status = await harness.get("/v1/tasks/\(id)", headers: ["prefer": "wait=1"])
        #expect(status.status == 200)
        #expect(status.headers["preference-applied"] == "wait=1")
        #expect(try JSONDecoder().decode(TaskDocument.self, from: status.body).status == .queued)
        // The front door's own limit caps it too (a buffered API Gateway route, the Lambda deadline).
        var request = APIRequest(method: "GET", path: "/v1/tasks/\(id)", headers: ["prefer": "wait=30", "host": "api.test"])
        request.answerWithin = .milliseconds(2500)
        #expect(await harness.handler.handle(request).headers["preference-applied"] == "wait=0")
        #expect(await harness.get("/v1/tasks/\(id)").headers["preference-applied"] == nil)
    }

    @Test func aStatusThatAsksToWaitAnswersWhenTheTaskEnds() async throws {
        let harness = try await Self.harness()
        let store = harness.fixture.context.transport.tasks
        let id = try JSONDecoder().decode(TaskDocument.self, from: await harness.post(#"{"prompt": "x"}"#).body).id
        let finisher = Self.finishTheNextTask(in: store)
        let started = ContinuousClock.now
        let response = await harness.get("/v1/tasks/\(id)", headers: ["prefer": "wait=20"])
        _ = await finisher.value
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(response.status == 200)
        #expect(try JSONDecoder().decode(TaskDocument.self, from: response.body).status == .succeeded)
    }

    @Test func theListPagesThroughTheTenantsTasksNewestFirst() async throws {
        let harness = try await Self.harness(apiKeys: ["key-a", "key-b"])
        var mine: [String] = []
        for _ in 0..<5 {
            let response = await harness.post(#"{"prompt": "x"}"#, headers: ["authorization": "Bearer key-a"])
            mine.append(try JSONDecoder().decode(TaskDocument.self, from: response.body).id)
            try await Task.sleep(for: .milliseconds(2))
        }
        _ = await harness.post(#"{"prompt": "theirs"}"#, headers: ["authorization": "Bearer key-b"])
        var seen: [String] = []
        var path = "/v1/tasks?limit=2"
        for _ in 0..<5 {
            let response = await harness.get(path, headers: ["authorization": "Bearer key-a"])
            #expect(response.status == 200)
            let body = try JSONValue.parse(response.body)
            seen += (body["tasks"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
            guard let next = body["next"]?.stringValue else {
                #expect(body["next_cursor"] == .null)
                break
            }
            #expect(next.contains("limit=2"), "the next link keeps the filters")
            path = next
        }
        #expect(seen == mine.reversed())
        let queued = try JSONValue.parse(await harness.get("/v1/tasks?status=queued&pool=default", headers: ["authorization": "Bearer key-b"]).body)
        #expect(queued["tasks"]?.arrayValue?.count == 1)
    }

    @Test(arguments: [
        ("limit=0", "limit"), ("limit=x", "limit"), ("status=done", "status"), ("since=yesterday", "since"), ("until=253402300800000", "until"), ("since=-1", "since"),
        ("cursor=abc", "cursor"), ("colour=red", "colour"),
    ])
    func badListParametersAreNamed(_ query: String, _ field: String) async throws {
        let harness = try await Self.harness()
        let response = await harness.get("/v1/tasks?\(query)")
        #expect(response.status == 400)
        #expect(APIHandlerTests.error(response).field == field)
    }

    @Test func anUnknownPoolFilterIsTheSubmissionsUnknownPool() async throws {
        let harness = try await Self.harness()
        let response = await harness.get("/v1/tasks?pool=nowhere")
        #expect(response.status == 422)
        #expect(APIHandlerTests.error(response).code == "unknown_pool")
        #expect(APIHandlerTests.error(response).field == "pool")
    }
}
