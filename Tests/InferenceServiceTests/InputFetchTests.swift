import Foundation
import Hummingbird
import InferenceService
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// Init images named by URL (reference-format requests): fetched by the worker under its
/// outbound URL policy.
@Suite struct InputFetchTests {
    /// Runs jobs on the emulator and keeps the init images each job was given.
    struct RecordingRuntime: RuntimeBackend {
        let name = "recording"
        let seen = Accumulator<Data>()
        func run(_ job: RuntimeJob, window: RuntimeWindow, progress: @escaping @Sendable (Double) async -> Bool)
            async throws(RuntimeError) -> [RuntimeImage]
        {
            await seen.append(job.initImages)
            var plain = job
            plain.kind = .txt2img
            return try await EmulatorRuntime(stepDelay: .zero).run(plain, progress: progress)
        }
    }

    static let image = Data((0..<3000).map { UInt8($0 % 251) })

    static func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/cat.png") { _, _ in
            Response(status: .ok, headers: [.contentType: "image/png"], body: .init(byteBuffer: ByteBuffer(bytes: image)))
        }
        router.get("/moved") { _, _ in Response(status: .found, headers: [.location: "/cat.png"]) }
        router.get("/gone") { _, _ in Response(status: .notFound) }
        return router
    }

    func run(url: String, allowPrivate: Bool) async throws -> (Sdq_V1_TaskResult, [Data]) {
        let harness = try await InferenceWorkerTests.Harness.make()
        var task = Sdq_V1_GenerationTask()
        task.id = TaskID.generate()
        task.pool = "default"
        task.kind = .img2Img
        task.parameters.prompt = "fetch test"
        task.parameters.width = 64
        task.parameters.height = 64
        task.parameters.steps = 1
        task.parameters.batchSize = 1
        var input = Sdq_V1_ObjectRef()
        input.url = url
        task.inputs = [input]
        task.output.prefix = "outputs/\(task.id)/"
        _ = try await harness.fixture.transport.tasks.create(makeRecord(id: task.id, status: .dispatched))
        let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: task.id])
        try await harness.poolQueue.send(body: encoded.body, attributes: encoded.attributes)

        let runtime = RecordingRuntime()
        let worker = InferenceWorker(
            context: harness.fixture.context, runtime: runtime,
            configuration: InferenceConfiguration(
                pool: "default", receiveWait: .milliseconds(200), fetchPolicy: OutboundURLPolicy(allowPrivate: allowPrivate)),
            logger: testLogger())
        let result = try await whileRunning([worker]) { _ in
            let collected = Accumulator<Sdq_V1_TaskResult>()
            _ = await eventually {
                await collected.append(try await harness.results())
                return await collected.count > 0
            }
            return await collected.items.first
        }
        return (try #require(result), await runtime.seen.items)
    }

    @Test func anInitImageURLIsFetchedFollowingRedirects() async throws {
        try await withLoopbackServer(Self.router()) { port in
            let (result, seen) = try await run(url: "http://127.0.0.1:\(port)/moved", allowPrivate: true)
            #expect(result.outcome == .succeeded)
            #expect(seen == [Self.image])
        }
    }

    @Test func privateAddressesAreRefusedUnlessAllowed() async throws {
        try await withLoopbackServer(Self.router()) { port in
            let (result, seen) = try await run(url: "http://127.0.0.1:\(port)/cat.png", allowPrivate: false)
            #expect(result.outcome == .failed)
            #expect(result.error.code == "input_fetch_failed")
            #expect(result.error.message.contains("127.0.0.1 is in 127.0.0.0/8 (Loopback), which is not globally reachable"))
            #expect(seen.isEmpty)
        }
    }

    @Test func aMissingImageFailsTheTaskWithoutRetries() async throws {
        try await withLoopbackServer(Self.router()) { port in
            let (result, _) = try await run(url: "http://127.0.0.1:\(port)/gone", allowPrivate: true)
            #expect(result.outcome == .failed)
            #expect(result.error.code == "input_fetch_failed")
            #expect(result.error.message.contains("answered 404"))
        }
    }

    @Test(arguments: [
        ("127.0.0.1", false), ("10.1.2.3", false), ("172.20.0.1", false), ("192.168.1.1", false), ("169.254.169.254", false),
        ("100.64.0.1", false), ("0.0.0.0", false), ("224.0.0.1", false), ("::1", false), ("fe80::1", false), ("fd00::1", false),
        ("::ffff:10.0.0.1", false), ("8.8.8.8", true), ("52.94.236.248", true), ("2606:4700::1111", true), ("::ffff:1.1.1.1", true),
    ])
    func addressClassification(address: String, isPublic: Bool) {
        #expect(OutboundURLPolicy.isPublicAddress(address) == isPublic)
    }

    @Test func onlyHTTPURLsWithHostsAreFetched() async {
        let policy = OutboundURLPolicy(allowPrivate: true)
        #expect(await policy.submissionRefusal(for: URL(string: "file:///etc/passwd")!) != nil)
        #expect(await policy.submissionRefusal(for: URL(string: "http:///x")!) != nil)
        #expect(await policy.submissionRefusal(for: URL(string: "https://example.com/a.png")!) == nil)
        #expect(await OutboundURLPolicy().submissionRefusal(for: URL(string: "http://localhost/a.png")!) != nil)
    }
}
