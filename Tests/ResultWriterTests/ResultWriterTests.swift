import Foundation
import ResultWriter
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

@Suite struct ResultWriterTests {
    struct Harness {
        let fixture: EmbeddedFixture
        let writer: ResultWriter

        static func make() async throws -> Harness {
            let fixture = try await EmbeddedFixture.make()
            return Harness(fixture: fixture, writer: ResultWriter(context: fixture.context, logger: testLogger()))
        }

        func message(_ result: Sdq_V1_TaskResult) -> QueueMessage {
            let encoded = MessageCodec.encode(result, attributes: [MessageAttribute.taskID: result.id])
            return QueueMessage(messageID: "m", body: encoded.body, attributes: encoded.attributes, receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
        }

        func manifest(_ id: String) async throws -> TaskDocument? {
            guard let object = try await fixture.transport.objects.get(key: ResultWriter.manifestKey(for: id)) else { return nil }
            return try JSONDecoder().decode(TaskDocument.self, from: object.data)
        }
    }

    static func success(_ id: String, worker: String = "w1") -> Sdq_V1_TaskResult {
        var result = Sdq_V1_TaskResult()
        result.id = id
        result.outcome = .succeeded
        result.worker.workerID = worker
        result.timings.runtimeStartedAtMs = 100
        result.timings.runtimeFinishedAtMs = 200
        var image = Sdq_V1_ImageRef()
        image.object.key = "outputs/\(id)/image-0.png"
        image.object.contentType = "image/png"
        image.object.sha256 = "abc"
        image.width = 64
        image.height = 64
        image.seed = 1
        result.images = [image]
        return result
    }

    @Test func aSuccessFinalisesTheRecordAndWritesTheManifest() async throws {
        let harness = try await Harness.make()
        let record = makeRecord(status: .running)
        _ = try await harness.fixture.transport.tasks.create(record)
        #expect(await harness.writer.handle(harness.message(Self.success(record.id))) == .delete)
        let stored = try await harness.fixture.transport.tasks.get(id: record.id)
        #expect(stored?.status == .succeeded)
        #expect(stored?.progress == 1)
        #expect(stored?.images.map(\.key) == ["outputs/\(record.id)/image-0.png"])
        #expect(stored?.timings.runtimeStartedAt == 100)
        #expect(stored?.timings.finishedAt != nil)
        #expect(stored?.manifestKey == ResultWriter.manifestKey(for: record.id))
        let manifest = try await harness.manifest(record.id)
        #expect(manifest?.status == .succeeded)
        #expect(manifest?.images.first?.url == "s3://test-data/outputs/\(record.id)/image-0.png")
        #expect(manifest?.worker == "w1")
    }

    @Test func aDuplicateDeliveryLeavesOneTerminalStateAndOneManifest() async throws {
        let harness = try await Harness.make()
        let record = makeRecord(status: .running)
        _ = try await harness.fixture.transport.tasks.create(record)
        #expect(await harness.writer.handle(harness.message(Self.success(record.id, worker: "first"))) == .delete)
        let manifestBefore = try await harness.fixture.transport.objects.get(key: ResultWriter.manifestKey(for: record.id))
        let recordBefore = try await harness.fixture.transport.tasks.get(id: record.id)
        // The same task run twice (at-least-once): a second result from another worker.
        #expect(await harness.writer.handle(harness.message(Self.success(record.id, worker: "second"))) == .delete)
        var failure = Self.success(record.id, worker: "third")
        failure.outcome = .failed
        #expect(await harness.writer.handle(harness.message(failure)) == .delete)
        #expect(try await harness.fixture.transport.tasks.get(id: record.id) == recordBefore)
        #expect(try await harness.fixture.transport.objects.get(key: ResultWriter.manifestKey(for: record.id)) == manifestBefore)
    }

    @Test func aResultAfterACancelKeepsTheTaskCancelledAndStillWritesAManifest() async throws {
        let harness = try await Harness.make()
        let record = makeRecord(status: .cancelled)
        _ = try await harness.fixture.transport.tasks.create(record)
        #expect(await harness.writer.handle(harness.message(Self.success(record.id))) == .delete)
        #expect(try await harness.fixture.transport.tasks.get(id: record.id)?.status == .cancelled)
        #expect(try await harness.manifest(record.id)?.status == .cancelled)
    }

    @Test func failuresKeepTheirCodeAndMessage() async throws {
        let harness = try await Harness.make()
        let record = makeRecord(status: .dispatched)
        _ = try await harness.fixture.transport.tasks.create(record)
        var result = Sdq_V1_TaskResult()
        result.id = record.id
        result.outcome = .failed
        result.error.code = "runtime_error"
        result.error.message = "CUDA out of memory"
        #expect(await harness.writer.handle(harness.message(result)) == .delete)
        let stored = try await harness.fixture.transport.tasks.get(id: record.id)
        #expect(stored?.status == .failed)
        #expect(stored?.error == TaskFailure(code: "runtime_error", message: "CUDA out of memory"))
    }

    @Test func deadLetteredResultsFailTheirTask() async throws {
        let harness = try await Harness.make()
        let record = makeRecord(status: .running)
        _ = try await harness.fixture.transport.tasks.create(record)
        let dead = QueueMessage(messageID: "m", body: "x", attributes: [MessageAttribute.taskID: record.id], receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
        #expect(await harness.writer.deadLettered(dead) == .delete)
        #expect(try await harness.fixture.transport.tasks.get(id: record.id)?.error?.code == "dead_lettered")
    }

    @Test func aDecodableDeadLetteredResultIsStillApplied() async throws {
        let harness = try await Harness.make()
        let record = makeRecord(status: .running)
        _ = try await harness.fixture.transport.tasks.create(record)
        #expect(await harness.writer.deadLettered(harness.message(Self.success(record.id))) == .delete)
        #expect(try await harness.fixture.transport.tasks.get(id: record.id)?.status == .succeeded)
    }

    @Test func undecodableResultsAreRejectedAndUnknownTasksDropped() async throws {
        let harness = try await Harness.make()
        let garbage = QueueMessage(messageID: "m", body: "***", attributes: [:], receiptHandle: "r", receiveCount: 1, sentAtMillis: 0)
        #expect(await harness.writer.handle(garbage) == .reject)
        #expect(await harness.writer.handle(harness.message(Self.success("unknown-task"))) == .delete)
    }
}
