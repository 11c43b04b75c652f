import AsyncHTTPClient
import Foundation
@testable import ApiLambda
import SDQPlatform
import SDQTestSupport
import Testing
import ApiHTTP
import ServiceLifecycle

/// `GET /v1/tasks/{id}/events`: every event kind in order, resuming with `Last-Event-ID`, the end
/// (terminal event, then 204 for a client that saw it), heartbeats, 404 before streaming for a
/// task that is not the caller's, and stream tokens for clients that cannot send a key.
@Suite struct EventStreamTests {
    typealias Harness = APIHandlerTests.Harness

    static func harness(apiKeys: [String] = [], heartbeat: Duration = .seconds(15)) async throws -> Harness {
        var harness = try await Harness.make(apiKeys: apiKeys)
        harness.handler.eventTiming.heartbeat = heartbeat
        harness.handler.eventTiming.pollInterval = .milliseconds(50)
        return harness
    }

    static func submit(_ harness: Harness, headers: [String: String] = [:]) async throws -> TaskDocument {
        let response = await harness.post(#"{"prompt": "a kite", "steps": 20}"#, headers: headers)
        #expect(response.status == 202)
        return try JSONDecoder().decode(TaskDocument.self, from: response.body)
    }

    static let image = ImageRecord(key: "outputs/t/image-0.png", contentType: "image/png", width: 64, height: 64, seed: 1, sha256: "ab", size: 9)

    static func finish(_ id: String, in store: any TaskStore) async throws {
        let now = EpochClock.nowMillis()
        let done = TaskConclusion(status: .succeeded, images: [image], worker: "w1", pool: "default", startedAt: now - 2000,
                                  runtimeStartedAt: now - 1500, runtimeFinishedAt: now - 100, finishedAt: now)
        _ = try await store.apply(.finished(done, claim: AnnouncementClaim(token: "w", at: now, manifestKey: "m")), to: id)
    }

    @Test func everyEventKindArrivesInOrderAndTheStreamEndsAfterTheTerminalOne() async throws {
        let harness = try await Self.harness()
        let store = harness.fixture.context.transport.tasks
        let task = try await Self.submit(harness)
        let response = await harness.get("/v1/tasks/\(task.id)/events")
        #expect(response.status == 200)
        #expect(response.headers["content-type"] == "text/event-stream")
        #expect(response.headers["cache-control"] == "no-store")
        let (reader, running) = EventReader.reading(response)

        let queued = try #require(await reader.wait(for: "queued"))
        #expect(queued.json?["queue_position"]?.integerValue == 1)
        #expect(queued.json?["status"]?.stringValue == "queued")
        let now = EpochClock.nowMillis()
        _ = try await store.apply(.dispatched(pool: "default", model: "emulator-v1", at: now, queuePosition: 1), to: task.id)
        #expect(await reader.wait(for: "dispatched") != nil)
        _ = try await store.apply(.started(worker: "worker-7", at: now), to: task.id)
        let started = try #require(await reader.wait(for: "running"))
        #expect(started.json?["worker"]?.stringValue == "worker-7")
        _ = try await store.apply(.progressed(0.25), to: task.id)
        let progress = try #require(await reader.wait(for: "progress"))
        #expect(progress.json?["step"]?.integerValue == 5)
        #expect(progress.json?["steps"]?.integerValue == 20)
        #expect(progress.json?["fraction"]?.numberValue == 0.25)
        #expect(progress.json?["eta_seconds"]?.numberValue != nil, "the task's own step rate gives an ETA")
        let previewKey = "previews/\(task.id)/preview.jpg"
        try await harness.fixture.context.transport.objects.put(key: previewKey, data: Data([0xFF, 0xD8]), contentType: "image/jpeg")
        _ = try await store.apply(.previewed(key: previewKey, at: now + 5), to: task.id)
        let preview = try #require(await reader.wait(for: "preview"))
        #expect(preview.json?["url"]?.stringValue?.hasPrefix("http://api.test/v1/objects/previews/") == true)
        let status = try JSONDecoder().decode(TaskDocument.self, from: await harness.get("/v1/tasks/\(task.id)").body)
        #expect(status.preview?.at == now + 5, "the status document links the newest preview")

        try await Self.finish(task.id, in: store)
        try await running.value
        let events = await reader.events
        #expect(await reader.names == ["queued", "dispatched", "running", "progress", "preview", "succeeded"])
        let final = try JSONDecoder().decode(TaskDocument.self, from: Data(events.last!.data.utf8))
        #expect(final.status == .succeeded && final.images.count == 1, "the terminal event carries the full status document")
        #expect(final.eventsURL == nil && final.preview == nil)
        #expect(Set(events.compactMap(\.id)).count == events.count, "every event has an id of its own")
        #expect(await reader.retry == 2000)
        #expect(await harness.handler.openStreams.current == 0)
    }

    @Test func aClientResumesWithLastEventIDAndOneThatSawTheEndIsToldToStop() async throws {
        let harness = try await Self.harness()
        let store = harness.fixture.context.transport.tasks
        let task = try await Self.submit(harness)
        _ = try await store.apply(.started(worker: "w", at: EpochClock.nowMillis()), to: task.id)
        _ = try await store.apply(.progressed(0.5), to: task.id)
        let (first, firstRun) = EventReader.reading(await harness.get("/v1/tasks/\(task.id)/events"))
        let half = try #require(await first.wait(for: "progress"))
        #expect(await first.names == ["running", "progress"])
        firstRun.cancel()

        // Reconnecting where it left off: nothing is repeated; newer progress arrives.
        let resumed = await harness.get("/v1/tasks/\(task.id)/events", headers: ["last-event-id": try #require(half.id)])
        let (second, secondRun) = EventReader.reading(resumed)
        _ = try await store.apply(.progressed(0.75), to: task.id)
        let later = try #require(await second.wait(for: "progress"))
        #expect(later.json?["fraction"]?.numberValue == 0.75)
        try await Self.finish(task.id, in: store)
        try await secondRun.value
        #expect(await second.names == ["progress", "succeeded"])

        let terminalID = try #require(await second.events.last?.id)
        let stop = await harness.get("/v1/tasks/\(task.id)/events", headers: ["last-event-id": terminalID])
        #expect(stop.status == 204, "EventSource stops reconnecting on 204")
        #expect(stop.stream == nil)
        // A new client of an ended task gets the terminal event alone.
        let (late, lateRun) = EventReader.reading(await harness.get("/v1/tasks/\(task.id)/events"))
        try await lateRun.value
        #expect(await late.names == ["succeeded"])
        // An id that is not one of this stream's is ignored: the client starts from the beginning.
        let (odd, oddRun) = EventReader.reading(await harness.get("/v1/tasks/\(task.id)/events", headers: ["last-event-id": "zzz"]))
        try await oddRun.value
        #expect(await odd.names == ["succeeded"])
    }

    @Test func heartbeatsKeepAQuietStreamOpen() async throws {
        let harness = try await Self.harness(heartbeat: .milliseconds(100))
        let task = try await Self.submit(harness)
        let (reader, running) = EventReader.reading(await harness.get("/v1/tasks/\(task.id)/events"))
        #expect(await eventually(timeout: .seconds(10)) { await reader.comments >= 2 })
        #expect(await reader.names == ["queued"], "nothing changed: comments only")
        running.cancel()
        #expect(await eventually { await harness.handler.openStreams.current == 0 })
    }

    @Test func aTaskThatIsNotTheCallersIs404BeforeAnythingStreams() async throws {
        let harness = try await Self.harness(apiKeys: ["key-a", "key-b"])
        let task = try await Self.submit(harness, headers: ["authorization": "Bearer key-a"])
        let foreign = await harness.get("/v1/tasks/\(task.id)/events", headers: ["authorization": "Bearer key-b"])
        #expect(foreign.status == 404)
        #expect(foreign.stream == nil)
        #expect(APIHandlerTests.error(foreign).code == "task_not_found")
        let missing = await harness.get("/v1/tasks/\(TaskID.generate())/events", headers: ["authorization": "Bearer key-a"])
        #expect(missing.status == 404 && missing.stream == nil)
        #expect(await harness.get("/v1/tasks/\(task.id)/events").status == 401)
        let wrongMethod = await harness.handler.handle(APIRequest(method: "POST", path: "/v1/tasks/\(task.id)/events"))
        #expect(wrongMethod.status == 401 || wrongMethod.status == 405)
    }

    /// `EventSource` cannot send a key: the status document's `events_url` carries a token that
    /// opens that one stream, for a while, and nothing else.
    @Test func theStatusDocumentsStreamTokenOpensThatStreamAndNothingElse() async throws {
        var harness = try await Self.harness(apiKeys: ["key-a", "key-b"])
        harness.handler.streamTokens = StreamTokens(secret: Data(repeating: 3, count: 32))
        let task = try await Self.submit(harness, headers: ["authorization": "Bearer key-a"])
        let other = try await Self.submit(harness, headers: ["authorization": "Bearer key-a"])
        let document = try JSONDecoder().decode(
            TaskDocument.self, from: await harness.get("/v1/tasks/\(task.id)", headers: ["authorization": "Bearer key-a"]).body)
        let url = try #require(document.eventsURL.flatMap(URLComponents.init(string:)))
        #expect(url.path == "/v1/tasks/\(task.id)/events")
        let token = try #require(url.queryItems?.first { $0.name == "token" }?.value)

        let opened = await harness.get("/v1/tasks/\(task.id)/events?token=\(token)")
        #expect(opened.status == 200 && opened.stream != nil)
        #expect(await harness.get("/v1/tasks/\(other.id)/events?token=\(token)").status == 401, "another task's stream")
        #expect(await harness.get("/v1/tasks/\(task.id)?token=\(token)").status == 401, "the token is not a key")
        #expect(await harness.get("/v1/tasks?token=\(token)").status == 401)
        let forged = token.dropLast(2) + (token.hasSuffix("AA") ? "BB" : "AA")
        #expect(await harness.get("/v1/tasks/\(task.id)/events?token=\(forged)").status == 401)

        let tokens = try #require(harness.handler.streamTokens)
        let issued = tokens.issue(tenant: "acme", taskID: task.id, now: 1_000_000)
        #expect(tokens.verify(issued, taskID: task.id, now: 1_000_000 + 599_000) == "acme")
        #expect(tokens.verify(issued, taskID: task.id, now: 1_000_000 + 601_000) == nil, "expired after ten minutes")
        #expect(StreamTokens(secret: Data(repeating: 4, count: 32)).verify(issued, taskID: task.id, now: 1_000_000) == nil)
    }

    /// Over the HTTP server: events are flushed as they happen, and a client that hangs up frees
    /// its stream at once, not at the next heartbeat (a minute away here).
    @Test func aClientThatHangsUpFreesItsStreamAtOnce() async throws {
        let harness = try await Self.harness(heartbeat: .seconds(60))
        let task = try await Self.submit(harness)
        try await APIHTTPServerTests.withServer(harness.handler) { port in
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            let reader = EventReader()
            let reading = Task {
                let request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/tasks/\(task.id)/events")
                let response = try await client.execute(request, timeout: .seconds(60))
                #expect(response.headers["content-type"].first == "text/event-stream")
                for try await piece in response.body { await reader.feed(Data(piece.readableBytesView)) }
            }
            #expect(await reader.wait(for: "queued") != nil, "the first event arrives before the stream ends")
            #expect(harness.handler.openStreams.current == 1)
            reading.cancel()
            try? await client.shutdown()
            #expect(await eventually(timeout: .seconds(5)) { harness.handler.openStreams.current == 0 })
        }
    }

    /// A server shutting down gracefully ends its open streams with `reconnect` (the client
    /// resumes elsewhere) instead of waiting for their tasks, which may never end here.
    @Test func aShutdownEndsOpenStreamsWithReconnect() async throws {
        let harness = try await Self.harness(heartbeat: .seconds(60))
        let task = try await Self.submit(harness)
        let port = PortBox()
        let server = APIHTTPServer(handler: harness.handler, port: 0, logger: testLogger()) { await port.set($0) }
        let group = ServiceGroup(configuration: .serverUnderTest([server], logger: testLogger()))
        let reader = EventReader()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            let url = "http://127.0.0.1:\(await port.wait())/v1/tasks/\(task.id)/events"
            tasks.addTask {
                let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
                for try await piece in response.body { await reader.feed(Data(piece.readableBytesView)) }
                await reader.end()
            }
            #expect(await reader.wait(for: "queued") != nil)
            let asked = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(ContinuousClock.now - asked < .seconds(5), "the server stopped without waiting for the task")
            try await client.shutdown()
        }
        let reconnect = try #require(await reader.events.last)
        #expect(reconnect.event == "reconnect")
        #expect(reconnect.json?["last_event_id"]?.stringValue == reconnect.id)
        #expect(await reader.ended)
        #expect(harness.handler.openStreams.current == 0)
    }

    @Test func theTrackerResumesFromAnIDAndReportsQueueMoves() {
        var record = makeRecord()
        record.parameters = #"{"steps": 30}"#
        var tracker = TaskEventTracker()
        let now = EpochClock.nowMillis()
        func names(_ observation: TaskObservation) -> [String] {
            tracker.events(for: observation) { "{}" }.compactMap(\.event)
        }
        #expect(names(TaskObservation(record: record, queuePosition: 4, now: now)) == ["queued"])
        #expect(names(TaskObservation(record: record, queuePosition: 4, now: now)).isEmpty)
        #expect(names(TaskObservation(record: record, queuePosition: 2, typicalSeconds: 3, now: now)) == ["queued"], "moved up the line")
        record.status = .running
        record.timings.startedAt = now - 10_000
        record.progress = 0.5
        let events = tracker.events(for: TaskObservation(record: record, now: now)) { "{}" }
        #expect(events.compactMap(\.event) == ["running", "progress"])
        let eta = try? JSONValue.parse(Data(events[1].data.utf8))["eta_seconds"]?.numberValue
        #expect(eta == 10, "half done in 10 s: 10 s to go")
        var resumed = TaskEventTracker(resumingAfter: events[1].id)
        #expect(resumed.events(for: TaskObservation(record: record, now: now)) { "{}" }.isEmpty)
        record.status = .cancelled
        #expect(resumed.events(for: TaskObservation(record: record, now: now)) { "{}" }.compactMap(\.event) == ["cancelled"])
    }
}
