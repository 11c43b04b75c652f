@testable import ApiLambda
import Foundation
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Webhook destinations checked at submission, what the status shows of a callback, and the
/// queue position of waiting tasks.
@Suite struct CallbackAndQueueTests {
    typealias Harness = APIHandlerTests.Harness

    static func withPolicy(_ harness: Harness, allowPrivate: Bool) -> APIHandler {
        var handler = harness.handler
        handler.webhookPolicy = OutboundURLPolicy(allowPrivate: allowPrivate)
        return handler
    }

    static func post(_ handler: APIHandler, _ body: String) async -> APIResponse {
        await handler.handle(APIRequest(method: "POST", path: "/v1/tasks", headers: ["host": "api.test"], body: Data(body.utf8)))
    }

    @Test(arguments: [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "http://127.0.0.1:8080/hook", "http://localhost/hook",
        "http://10.1.2.3/hook", "http://192.168.1.20/hook", "http://172.16.0.1/hook", "http://100.64.0.1/hook", "http://0.0.0.0/hook",
        "http://[::1]/hook", "http://[fd00::1]/hook", "http://[fe80::1]/hook", "http://[::ffff:169.254.169.254]/hook",
    ])
    func privateDestinationsAreRefusedAtSubmission(url: String) async throws {
        let harness = try await Harness.make()
        let handler = Self.withPolicy(harness, allowPrivate: false)
        let response = await Self.post(handler, #"{"prompt": "x", "callback": {"url": "\#(url)"}}"#)
        #expect(response.status == 400)
        #expect(APIHandlerTests.error(response) == ("callback_refused", "callback.url"))
        #expect(try await harness.queued() == 0)
    }

    @Test(arguments: [
        (#"{"url": "ftp://hooks.example.com/x"}"#, "callback.url"), (#"{"url": "file:///etc/passwd"}"#, "callback.url"),
        (#"{"url": "https://hooks.example.com/x", "events": ["finished"]}"#, "callback.events"),
        (#"{"url": "https://hooks.example.com/x", "secret": "hunter2"}"#, "callback.secret"),
    ])
    func malformedCallbacksNameTheirField(callback: String, field: String) async throws {
        let harness = try await Harness.make()
        let response = await harness.post(#"{"prompt": "x", "callback": \#(callback)}"#)
        #expect(response.status == 400)
        #expect(APIHandlerTests.error(response).field == field)
        #expect(try await harness.queued() == 0)
    }

    @Test func anAllowedCallbackIsRecordedAndItsSecretNeverShown() async throws {
        let harness = try await Harness.make()
        let handler = Self.withPolicy(harness, allowPrivate: true)
        let secret = "whsec_" + Data(repeating: 3, count: 24).base64EncodedString()
        let response = await Self.post(
            handler, #"{"prompt": "x", "callback": {"url": "http://127.0.0.1:9/hook", "secret": "\#(secret)", "events": ["completed", "progress"]}}"#)
        #expect(response.status == 202)
        #expect(!String(decoding: response.body, as: UTF8.self).contains(secret))
        let json = try JSONValue.parse(response.body)
        #expect(json["webhook"]?["url"]?.stringValue == "http://127.0.0.1:9/hook")
        #expect(json["webhook"]?["status"]?.stringValue == "pending")
        #expect(json["webhook"]?["attempts"] == .array([]))
        let id = try #require(json["id"]?.stringValue)
        let record = try #require(try await harness.fixture.transport.tasks.get(id: id))
        #expect(record.callback == CallbackSpec(url: "http://127.0.0.1:9/hook", secret: secret, events: ["completed", "progress"]))
        #expect(record.parameters.flatMap { try? JSONValue.parse(Data($0.utf8)) }?["prompt"]?.stringValue == "x")
    }

    @Test func theTenantIsDerivedFromTheAPIKeyNotTheKeyItself() async throws {
        let harness = try await Harness.make(apiKeys: ["k-one", "k-two"])
        let response = await harness.post(#"{"prompt": "x"}"#, headers: ["authorization": "Bearer k-two"])
        #expect(response.status == 202)
        let id = try #require(try JSONValue.parse(response.body)["id"]?.stringValue)
        let tenant = try #require(try await harness.fixture.transport.tasks.get(id: id)?.tenant)
        #expect(tenant.hasPrefix("key-") && tenant.count == 16 && !tenant.contains("k-two"))
        #expect(harness.handler.tenant(of: APIRequest(method: "GET", path: "/", headers: ["x-api-key": "k-two"]))?.name == tenant)
    }

    /// Queued tasks report their place on the dispatch queue; dispatched ones the place the
    /// dispatcher recorded, capped by what is still visible on the pool's lanes.
    @Test func waitingTasksReportTheirQueuePosition() async throws {
        var harness = try await Harness.make()
        let clock = ManualClock()
        harness.handler.depths = QueueDepthCache(clock: clock.service)
        let context = harness.fixture.context
        var ids: [String] = []
        for _ in 0..<3 {
            let response = await harness.post(#"{"prompt": "x"}"#)
            ids.append(try #require(try JSONValue.parse(response.body)["id"]?.stringValue))
        }
        func position(_ id: String) async throws -> Int? {
            try JSONValue.parse(await harness.get("/v1/tasks/\(id)").body)["queue_position"].flatMap {
                if case .number(let n) = $0 { return Int(n) } else { return nil }
            }
        }
        clock.advance(by: .milliseconds(1001))  // past the submissions' cached reading
        #expect(try await position(ids[0]) == 3)  // three on the dispatch queue
        // What the dispatcher does: each joins the normal lane, noting its place in line.
        let dispatch = context.transport.queue(named: context.names.dispatchQueue)
        for message in try await dispatch.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)) {
            try await dispatch.delete(receiptHandle: message.receiptHandle)
        }
        let lane = context.transport.queue(named: context.names.poolQueue("default"))
        for (index, id) in ids.enumerated() {
            try await lane.send(body: "x", attributes: [MessageAttribute.taskID: id])
            _ = try await context.transport.tasks.update(id: id, ifStatusIn: [.queued]) {
                $0.status = .dispatched
                $0.queuePositionAtDispatch = index + 1
            }
        }
        clock.advance(by: .milliseconds(1001))
        var positions: [Int?] = []
        for id in ids { positions.append(try await position(id)) }
        #expect(positions == [1, 2, 3])
        // A worker takes the first; only two remain visible, so the last is at most second.
        _ = try await lane.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30))
        _ = try await context.transport.tasks.update(id: ids[0], ifStatusIn: [.dispatched]) { $0.status = .running }
        // Depths are read at most once a second per queue (QueueDepthCache): the next reading shows it.
        #expect(try await position(ids[2]) == 3, "the reading of a moment ago still serves")
        clock.advance(by: .milliseconds(1001))
        #expect(try await position(ids[0]) == nil)
        #expect(try await position(ids[2]) == 2)
        #expect(try await position(ids[1]) == 2)
    }
}
