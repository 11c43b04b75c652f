import ApiLambda
import AsyncHTTPClient
import Crypto
import Foundation
import InferenceService
import NIOCore
import ResultWriter
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Sdq
import Testing
import ApiHTTP
import EmulatorServer

/// The whole pipeline on the embedded transport: the same services `sdq up` runs.
@Suite struct EndToEndTests {
    static let fastPoolsYAML = """
        pools:
          - name: default
            runtime: emulator
            models: [emulator-v1]
        queues:
          max_receive_count: 2
          worker_visibility_timeout_seconds: 2
        """

    /// A stack on `kind` whose state lives in `directory` (embedded) or under the stack name
    /// `directory` was given (AWS; `aws init` runs on first open).
    static func stack(
        _ directory: TemporaryDirectory, _ kind: TransportKind = .embedded, workers: Int = 1,
        stepDelay: Duration = .milliseconds(2), poolsYAML: String = fastPoolsYAML, runtimeURL: String? = nil,
        configure: (inout SDQConfiguration) -> Void = { _ in }
    ) async throws -> InProcessStack {
        let poolsFile = directory.url.appendingPathComponent("pools.yaml")
        try poolsYAML.write(to: poolsFile, atomically: true, encoding: .utf8)
        var configuration = SDQConfiguration()
        configuration.dataDirectory = directory.url.appendingPathComponent("data").path
        configuration.poolsFile = poolsFile.path
        configuration.runtimeURL = runtimeURL
        configure(&configuration)
        var environment = ProcessInfo.processInfo.environment
        if kind == .aws {
            configuration.transport = .aws
            let stackFile = directory.url.appendingPathComponent("stack-name")
            if let existing = try? String(contentsOf: stackFile, encoding: .utf8) {
                configuration.stack = existing
            } else {
                configuration.stack = AWSTestEnvironment.uniqueStack()
                try configuration.stack.write(to: stackFile, atomically: true, encoding: .utf8)
            }
            environment = AWSTestEnvironment.variables()
        }
        let stack = try await InProcessStack.open(
            configuration: configuration, workersPerPool: workers, emulatorStepDelay: stepDelay,
            receiveWait: .milliseconds(200), logger: testLogger(), environment: environment)
        if kind == .aws { try await stack.context.transport.provision(stack.context.topology) }
        return stack
    }

    static func submit(_ stack: InProcessStack, _ body: String) async throws -> String {
        let response = await stack.handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(body.utf8)))
        #expect(response.status == 202)
        return try JSONDecoder().decode(TaskDocument.self, from: response.body).id
    }

    static func record(_ stack: InProcessStack, _ id: String) async throws -> TaskRecord? {
        try await stack.context.transport.tasks.get(id: id)
    }

    @Test(arguments: TransportKind.available)
    func submitOverHTTPYieldsSeedDeterminedPNGs(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory, kind)
        let port = PortBox()
        let server = APIHTTPServer(handler: stack.handler, port: 0, logger: testLogger()) { await port.set($0) }
        let downloads: [Data] = try await whileRunning(try stack.services() + [server]) { _ in
            let client = SDQClient(baseURL: "http://127.0.0.1:\(await port.wait())")
            var images: [Data] = []
            for seed in [7, 7, 8] {
                let accepted = try await client.submit(.object([
                    "prompt": .string("a lighthouse at dusk"), "seed": .number(Double(seed)),
                    "width": .number(256), "height": .number(192), "steps": .number(4),
                ]))
                #expect(accepted.status == .queued)
                let done = try await client.wait(accepted.id, interval: .milliseconds(50), timeout: .seconds(30))
                #expect(done.status == .succeeded)
                #expect(done.progress == 1)
                #expect(done.error == nil)
                #expect(done.worker != nil)
                let t = done.timings
                #expect(t.submittedAt != nil && t.dispatchedAt != nil && t.startedAt != nil)
                #expect(t.runtimeStartedAt != nil && t.runtimeFinishedAt != nil && t.finishedAt != nil)
                let image = try #require(done.images.first)
                #expect(image.seed == Int64(seed))
                #expect(image.width == 256 && image.height == 192)
                #expect(image.url.hasPrefix("http://127.0.0.1:"))
                let data = try await client.download(image.url)
                #expect(PNGInfo.size(of: data)?.width == 256)
                #expect(PNGInfo.size(of: data)?.height == 192)
                #expect(data.sha256Hex == image.sha256)
                images.append(data)
            }
            return images
        }
        await stack.close()
        #expect(downloads[0] == downloads[1], "the same seed gives the same bytes")
        #expect(downloads[0] != downloads[2], "another seed gives other bytes")
    }

    @Test(arguments: TransportKind.available)
    func img2imgFromAnUploadedInitImage(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory, kind)
        let port = PortBox()
        let server = APIHTTPServer(handler: stack.handler, port: 0, logger: testLogger()) { await port.set($0) }
        let finished: TaskDocument = try await whileRunning(try stack.services() + [server]) { _ in
            let base = "http://127.0.0.1:\(await port.wait())"
            let payload = Array(repeating: UInt8(7), count: 3 << 20)  // larger than an API request may be
            var create = HTTPClientRequest(url: "\(base)/v1/uploads")
            create.method = .POST
            create.body = .bytes(ByteBuffer(string: #"{"content_type": "image/png", "size": \#(payload.count)}"#))
            let created = try await HTTPClient.shared.execute(create, timeout: .seconds(10))
            let upload = try JSONValue.parse(Data(try await created.body.collect(upTo: 1 << 20).readableBytesView))
            #expect(created.status.code == 201)
            var put = HTTPClientRequest(url: try #require(upload["url"]?.stringValue))
            put.method = .PUT
            // The headers the URL was signed with (content type; on S3 also If-None-Match and the length).
            for (name, value) in upload["headers"]?.objectValue ?? [:] where name != "content-length" {
                put.headers.add(name: name, value: value.stringValue ?? "")
            }
            put.body = .bytes(ByteBuffer(bytes: payload))
            let uploaded = try await HTTPClient.shared.execute(put, timeout: .seconds(30))
            _ = try await uploaded.body.collect(upTo: 1 << 20)
            #expect(uploaded.status.code == 200)
            // The URL writes once: S3 holds the signed If-None-Match (412), the API refuses (409).
            let again = try await HTTPClient.shared.execute(put, timeout: .seconds(30))
            _ = try await again.body.collect(upTo: 1 << 20)
            #expect(again.status.code == (kind == .aws ? 412 : 409))
            let client = SDQClient(baseURL: base)
            let accepted = try await client.submit(.object([
                "prompt": .string("from an upload"), "kind": .string("img2img"), "seed": .number(2), "width": .number(64),
                "height": .number(64), "steps": .number(2), "init_image": .object(["upload": upload["key"] ?? .null]),
            ]))
            return try await client.wait(accepted.id, interval: .milliseconds(50), timeout: .seconds(30))
        }
        #expect(finished.status == .succeeded)
        #expect(finished.images.count == 1)
        await stack.close()
    }

    /// The reference guidance's ComfyUI sample (`tasktype: pipeline`) runs to an image on the emulator.
    @Test func aReferencePipelineTaskRunsItsWorkflow() async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory)
        let response = await stack.handler.handle(APIRequest(method: "POST", path: "/v1alpha2", body: try referenceSample("pipeline.json")))
        #expect(response.status == 200)
        let id = try #require(try JSONValue.parse(response.body)["task_id"]?.stringValue)
        try await whileRunning(try stack.services()) { _ in
            #expect(await eventually(timeout: .seconds(30)) { try await Self.record(stack, id)?.status.isTerminal == true })
        }
        let record = try #require(try await Self.record(stack, id))
        #expect(record.status == .succeeded, "\(String(describing: record.error))")
        #expect(record.images.count == 1)
        await stack.close()
    }

    /// The reference guidance's text-to-image sample (`POST /v1alpha2`) runs to an image.
    @Test(arguments: TransportKind.available)
    func aReferenceFormatTaskFlowsThroughThePipeline(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory, kind)
        let body = String(decoding: try referenceSample("t2i.json"), as: UTF8.self)
            .replacingOccurrences(of: "\"steps\": 16", with: "\"steps\": 2")
        let response = await stack.handler.handle(APIRequest(method: "POST", path: "/v1alpha2", body: Data(body.utf8)))
        #expect(response.status == 200)
        let id = try #require(try JSONValue.parse(response.body)["task_id"]?.stringValue)
        try await whileRunning(try stack.services()) { _ in
            #expect(await eventually(timeout: .seconds(30)) { try await Self.record(stack, id)?.status == .succeeded })
        }
        let record = try #require(try await Self.record(stack, id))
        #expect(record.images.count == 1)
        #expect(record.width == 512 && record.height == 512)
        await stack.close()
    }

    @Test(arguments: TransportKind.available)
    func aWorkerStoppedMidTaskLeavesTheTaskToCompleteOnce(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        // Receives to spare: a heartbeat late on a loaded machine may let the running message be
        // received once more before the stop hands it back; the subject here is the hand-back.
        let pools = Self.fastPoolsYAML.replacingOccurrences(of: "max_receive_count: 2", with: "max_receive_count: 5")
        let first = try await Self.stack(directory, kind, stepDelay: .milliseconds(150), poolsYAML: pools)
        // Long enough (about 22 s) that a slow store on a busy machine still sees it stopped mid-run.
        let id = try await Self.submit(first, #"{"prompt": "interrupted", "seed": 1, "width": 64, "height": 64, "steps": 150}"#)
        let firstWorker: String? = try await first.whileRunning {
            _ = await eventually(timeout: .seconds(30)) { try await Self.record(first, id)?.status == .running }
            return try await Self.record(first, id)?.worker ?? "none"
        }
        #expect(try await Self.record(first, id)?.status == .running)
        await first.close()

        let second = try await Self.stack(directory, kind, stepDelay: .milliseconds(1), poolsYAML: pools)
        let finished = try await second.whileRunning {
            _ = await eventually(timeout: .seconds(30)) { try await Self.record(second, id)?.status.isTerminal == true }
            return try await Self.record(second, id)
        }
        #expect(finished?.status == .succeeded, "\(String(describing: finished?.error))")
        #expect(finished?.worker != firstWorker)
        #expect(finished?.images.count == 1)
        #expect(try await second.context.transport.objects.exists(key: ResultWriter.manifestKey(for: id)))
        try await Self.expectQueuesDrained(second)
        await second.close()
    }

    @Test(arguments: TransportKind.available)
    func theSameTaskDeliveredTwiceEndsOnceWithOneManifest(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory, kind, workers: 2)
        let id = try await Self.submit(stack, #"{"prompt": "twice", "seed": 2, "width": 64, "height": 64, "steps": 3}"#)
        // Duplicate the dispatch message, as at-least-once delivery may.
        let dispatch = stack.context.transport.queue(named: stack.context.names.dispatchQueue)
        let original = try #require(try await dispatch.receive(maxMessages: 1, wait: .seconds(2), visibilityTimeout: .seconds(30)).first)
        try await dispatch.send(body: original.body, attributes: original.attributes)
        try await dispatch.send(body: original.body, attributes: original.attributes)
        try await dispatch.delete(receiptHandle: original.receiptHandle)

        let finished = try await stack.whileRunning {
            _ = await eventually(timeout: .seconds(30)) { try await Self.record(stack, id)?.status.isTerminal == true }
            // Let the duplicate drain too.
            _ = await eventually(timeout: .seconds(30)) { try await Self.queuesDrained(stack) }
            return try await Self.record(stack, id)
        }
        #expect(finished?.status == .succeeded)
        #expect(finished?.images.count == 1)
        let manifest = try #require(try await stack.context.transport.objects.get(key: ResultWriter.manifestKey(for: id)))
        let document = try JSONDecoder().decode(TaskDocument.self, from: manifest.data)
        #expect(document.status == .succeeded)
        #expect(document.timings.finishedAt == finished?.timings.finishedAt)
        try await Self.expectQueuesDrained(stack)
        await stack.close()
    }

    @Test(arguments: TransportKind.available)
    func anUndecodableMessageIsDeadLetteredAndItsTaskFailsVisibly(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory, kind)
        let record = makeRecord(status: .dispatched)
        _ = try await stack.context.transport.tasks.create(record)
        try await stack.context.transport.queue(named: stack.context.names.poolQueue("default"))
            .send(body: "definitely not protobuf", attributes: [MessageAttribute.taskID: record.id])
        let finished = try await stack.whileRunning {
            _ = await eventually(timeout: .seconds(30)) { try await Self.record(stack, record.id)?.status.isTerminal == true }
            return try await Self.record(stack, record.id)
        }
        #expect(finished?.status == .failed)
        #expect(finished?.error?.code == "dead_lettered")
        #expect(finished?.error?.message.contains("pool-default") == true)
        let status = await stack.handler.handle(APIRequest(method: "GET", path: "/v1/tasks/\(record.id)"))
        #expect(try JSONDecoder().decode(TaskDocument.self, from: status.body).error?.code == "dead_lettered")
        await stack.close()
    }

    @Test func aPoolOnTheSDWebUIRuntimeRunsThroughTheHTTPBackend() async throws {
        let directory = TemporaryDirectory()
        let port = PortBox()
        let emulator = EmulatorServer(port: 0, stepDelay: .milliseconds(1), logger: testLogger()) { await port.set($0) }
        try await whileRunning([emulator]) { _ in
            let poolsFile = directory.url.appendingPathComponent("pools.yaml")
            try "pools: [{name: webui, runtime: sdwebui, models: [emulator-v1]}]".write(to: poolsFile, atomically: true, encoding: .utf8)
            var configuration = SDQConfiguration()
            configuration.dataDirectory = directory.url.appendingPathComponent("data").path
            configuration.poolsFile = poolsFile.path
            configuration.runtimeURL = "http://127.0.0.1:\(await port.wait())"
            let stack = try await InProcessStack.open(configuration: configuration, receiveWait: .milliseconds(200), logger: testLogger())
            let id = try await Self.submit(stack, #"{"prompt": "via sdwebui", "seed": 9, "width": 64, "height": 64, "steps": 3}"#)
            let finished = try await stack.whileRunning {
                _ = await eventually(timeout: .seconds(30)) { try await Self.record(stack, id)?.status.isTerminal == true }
                return try await Self.record(stack, id)
            }
            #expect(finished?.status == .succeeded)
            #expect(finished?.pool == "webui")
            let key = try #require(finished?.images.first?.key)
            let stored = try #require(try await stack.context.transport.objects.get(key: key))
            let expected = try EmulatorImage.png(EmulatorImage.Parameters(
                prompt: "via sdwebui", model: "emulator-v1", seed: 9, width: 64, height: 64, steps: 3, cfgScale: 7, sampler: "Euler a"))
            #expect(stored.data == expected)
            await stack.close()
        }
    }

    @Test(arguments: TransportKind.available)
    func theRuntimeKilledAndRestartedMidRunLosesNothing(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let emulator = try SdqProcess.start(["emulate-runtime", "--port", "0", "--step-ms", "50"], environment: [:], in: directory)
        let url = try #require(await emulator.listeningURL(), "the emulator did not start: \(emulator.log)")
        let port = try #require(URL(string: url)?.port)
        let pools = """
            pools: [{name: webui, runtime: sdwebui, models: [emulator-v1]}]
            queues: {max_receive_count: 5, worker_visibility_timeout_seconds: 2}
            """
        let stack = try await Self.stack(directory, kind, poolsYAML: pools, runtimeURL: url)
        let id = try await Self.submit(stack, #"{"prompt": "outage", "seed": 4, "width": 64, "height": 64, "steps": 60}"#)
        let finished = try await stack.whileRunning {
            _ = await eventually(timeout: .seconds(30)) { try await Self.record(stack, id)?.status == .running }
            try await Task.sleep(for: .milliseconds(500))
            emulator.kill(SIGKILL)
            _ = await emulator.waitForExit()
            try await Task.sleep(for: .seconds(1))
            let restarted = try SdqProcess.start(
                ["emulate-runtime", "--port", "\(port)", "--step-ms", "2"], environment: [:], in: directory)
            defer { restarted.kill(SIGTERM) }
            _ = await restarted.listeningURL()
            _ = await eventually(timeout: .seconds(60)) { try await Self.record(stack, id)?.status.isTerminal == true }
            return try await Self.record(stack, id)
        }
        #expect(finished?.status == .succeeded, "\(String(describing: finished?.error))")
        #expect(finished?.images.count == 1)
        _ = await eventually(timeout: .seconds(10)) { try await Self.queuesDrained(stack, pool: "webui") }
        #expect(try await Self.queuesDrained(stack, pool: "webui"))
        await stack.close()
    }

    static func queuesDrained(_ stack: InProcessStack, pool: String = "default") async throws -> Bool {
        let names = stack.context.names
        var all = [names.dispatchQueue, names.resultsQueue, names.poolQueue(pool)]
        all += all.map { names.deadLetterQueue(of: $0) }
        for name in all where try await stack.context.transport.queue(named: name).depth() != QueueDepth(visible: 0, inFlight: 0) {
            return false
        }
        return true
    }

    static func expectQueuesDrained(_ stack: InProcessStack) async throws {
        #expect(try await queuesDrained(stack), "every queue and dead-letter queue is empty")
    }
}

extension Data {
    var sha256Hex: String { SHA256.hash(data: self).map { String(format: "%02x", $0) }.joined() }
}
