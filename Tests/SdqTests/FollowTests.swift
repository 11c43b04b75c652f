import ApiHTTP
import Foundation
import Hummingbird
import InferenceService
import NIOCore
import SDQPlatform
import SDQTestSupport
@testable import Sdq
import Testing

/// Watching a task from a client: the event stream with live previews end to end, and the
/// client's reconnection and fallback to polling.
@Suite struct FollowTests {
    /// Every preview the emulator can give for `parameters`.
    static func possiblePreviews(_ parameters: EmulatorImage.Parameters) throws -> Set<Data> {
        Set(try (0...parameters.steps).map { try EmulatorImage.preview(parameters, fraction: Double($0) / Double(parameters.steps)) })
    }

    @Test(arguments: TransportKind.available)
    func previewsAndProgressReachAFollowingClient(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let stack = try await EndToEndTests.stack(directory, kind, stepDelay: .milliseconds(80)) { $0.previewIntervalMilliseconds = 200 }
        let port = PortBox()
        let server = APIHTTPServer(handler: stack.handler, port: 0, logger: testLogger()) { await port.set($0) }
        let updates = Accumulator<TaskUpdate>()
        let (done, preview, statusPreview) = try await whileRunning(try stack.services() + [server]) { _ in
            let client = SDQClient(baseURL: "http://127.0.0.1:\(await port.wait())")
            let accepted = try await client.submit(.object([
                "prompt": .string("a lighthouse at dusk"), "seed": .number(5), "width": .number(256), "height": .number(192),
                "steps": .number(40),
            ]))
            // The status document links the newest preview while the task runs.
            let linked = Task {
                while !Task.isCancelled {
                    if let document = try? await client.status(accepted.id), let preview = document.preview { return Optional(preview) }
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return nil
            }
            let done = try await client.follow(accepted.id, timeout: .seconds(60)) { update in
                Task { await updates.append([update]) }
            }
            try await Task.sleep(for: .milliseconds(50))
            linked.cancel()
            let url = try #require(await updates.items.compactMap(\.previewURL).last, "no preview event")
            return (done, try await client.download(url), await linked.value)
        }
        await stack.close()
        #expect(done.status == .succeeded)
        #expect(done.preview == nil, "a finished task links no preview")
        let seen = await updates.items
        #expect(seen.contains { $0.status == .running && $0.step != nil && $0.steps == 40 }, "progress with steps: \(seen)")
        #expect(seen.contains { $0.etaSeconds != nil })
        let parameters = EmulatorImage.Parameters(
            prompt: "a lighthouse at dusk", model: "emulator-v1", seed: 5, width: 256, height: 192, steps: 40, cfgScale: 7, sampler: "Euler a")
        #expect(try Self.possiblePreviews(parameters).contains(preview), "the preview is the task's picture part way")
        #expect(statusPreview != nil, "the status document linked the preview")
    }

    /// A fake API: `/events` answers as `events` says for each connection (in order), and
    /// `GET /v1/tasks/{id}` answers `document`.
    static func withFakeAPI<T: Sendable>(
        events: [@Sendable (Request) -> Response], document: TaskDocument, _ body: @Sendable (SDQClient, Accumulator<String>) async throws -> T
    ) async throws -> T {
        let seen = Accumulator<String>()
        let connections = Accumulator<Int>()
        let router = Router()
        router.get("/v1/tasks/:id/events") { request, _ -> Response in
            await connections.append([1])
            await seen.append([request.headers[.init("Last-Event-ID")!] ?? "-"])
            let index = min(events.count - 1, await connections.items.count - 1)
            return events[index](request)
        }
        router.get("/v1/tasks/:id") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: try document.encoded())))
        }
        let port = PortBox()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: { await port.set($0.localAddress?.port ?? 0) })
        return try await whileRunning([app]) { _ in
            try await body(SDQClient(baseURL: "http://127.0.0.1:\(await port.wait())"), seen)
        }
    }

    static func stream(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/event-stream"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func document(_ status: TaskStatus) throws -> TaskDocument {
        try JSONDecoder().decode(TaskDocument.self, from: Data(#"""
            {"id": "t1", "status": "\#(status.rawValue)", "pool": "default", "model": "m", "progress": 1, "images": [], "error": null,
             "worker": null, "timings": {}}
            """#.utf8))
    }

    @Test func theClientResumesWithLastEventIDWhenTheServerSaysReconnect() async throws {
        let final = String(decoding: try Self.document(.succeeded).encoded(), as: UTF8.self)
        let (document, lastIDs) = try await Self.withFakeAPI(events: [
            { _ in Self.stream("retry: 10\n\nid: 0.-1.0.q2\nevent: queued\ndata: {\"id\":\"t1\",\"status\":\"queued\",\"queue_position\":2}\n\nid: 0.-1.0.q2\nevent: reconnect\ndata: {}\n\n") },
            { _ in Self.stream("id: 2.500.0\nevent: progress\ndata: {\"fraction\":0.5,\"step\":5,\"steps\":10}\n\n") },
            { _ in Self.stream("id: 3.1000.0\nevent: succeeded\ndata: \(final)\n\n") },
        ], document: try Self.document(.running)) { client, seen in
            let updates = Accumulator<TaskUpdate>()
            let document = try await client.follow("t1", timeout: .seconds(10)) { update in Task { await updates.append([update]) } }
            try await Task.sleep(for: .milliseconds(20))
            let items = await updates.items
            #expect(items.contains { $0.queuePosition == 2 && $0.status == .queued })
            #expect(items.contains { $0.step == 5 && $0.steps == 10 && $0.status == .running })
            return (document, await seen.items)
        }
        #expect(document.status == .succeeded)
        #expect(lastIDs == ["-", "0.-1.0.q2", "2.500.0"], "each reconnection names the last event seen")
    }

    @Test func withoutAStreamTheClientPolls() async throws {
        let notFound = Response(status: .notFound, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: #"{"error":{"code":"not_found","message":"no route","field":null}}"#)))
        let document = try await Self.withFakeAPI(events: [{ _ in notFound }], document: try Self.document(.failed)) { client, _ in
            try await client.follow("t1", timeout: .seconds(10))
        }
        #expect(document.status == .failed, "the status came from polling")
    }

    @Test func aStreamThatKeepsBreakingFallsBackToPolling() async throws {
        let broken = Response(status: .badGateway)
        let (document, attempts) = try await Self.withFakeAPI(events: [{ _ in broken }], document: try Self.document(.succeeded)) { client, seen in
            (try await client.follow("t1", timeout: .seconds(20)), await seen.items.count)
        }
        #expect(document.status == .succeeded)
        #expect(attempts == 3)
    }
}

/// The progress line `sdq wait` draws.
@Suite struct ProgressLineTests {
    @Test func theLineShowsStepsETAAndPlaceInLine() {
        var update = TaskUpdate(id: "t1", status: .queued)
        update.queuePosition = 3
        update.etaSeconds = 12.4
        #expect(ProgressDisplay.describe(update) == "t1  [------------------------]  0%  queued, #3 in line  ETA 12s")
        update.status = .running
        update.queuePosition = nil
        update.step = 10
        update.steps = 20
        update.fraction = 0.5
        update.etaSeconds = 3.14
        #expect(ProgressDisplay.describe(update) == "t1  [############------------]  10/20 steps  running  ETA 3.1s")
    }
}
