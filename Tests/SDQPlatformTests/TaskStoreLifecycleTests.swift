import Foundation
@testable import SDQAWS
@testable import SDQAWSTransport
@testable import SDQPlatform
import SDQTestSupport
import Testing

/// The stores apply lifecycle events exactly as the pure state machine does, on both transports:
/// the AWS store as one conditional `UpdateItem` per event, the embedded one by reading the record.
@Suite struct TaskStoreLifecycleTests {
    static let claim = AnnouncementClaim(token: "writer-1", at: EpochClock.nowMillis(), manifestKey: "results/t/manifest.json")

    /// Applies `events` to a fresh record in the store and to a copy in memory, and checks each
    /// outcome and the stored record against the pure state machine.
    func replay(_ events: [TaskEvent], on store: any TaskStore, start: TaskRecord) async throws {
        var model = start
        for event in events {
            var next = model
            let permitted = TaskLifecycle.apply(event, to: &next)
            let outcome = try await store.apply(event, to: start.id)
            switch outcome {
            case .applied(let record):
                #expect(permitted, "\(event) was applied but the lifecycle refuses it")
                #expect(record == next, "\(event): the store wrote something else than the lifecycle")
                model = next
            case .conflict(let current):
                #expect(!permitted, "\(event) was refused but the lifecycle permits it")
                #expect(current == model)
            case .notFound:
                Issue.record("\(event): the task vanished")
            }
            #expect(try await store.get(id: start.id) == model, "after \(event)")
        }
    }

    @Test(arguments: TransportKind.available)
    func aTaskLivesAndEndsOnceInEveryStore(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        var record = makeRecord()
        record.callback = CallbackSpec(url: "https://example.com/hook", events: ["running"])
        _ = try await fixture.transport.tasks.create(record)
        let image = ImageRecord(key: "outputs/t/image-0.png", contentType: "image/png", width: 64, height: 64, seed: 1, sha256: "ab", size: 9)
        let done = TaskConclusion(status: .succeeded, images: [image], worker: "w1", pool: "default", attempts: 1,
                                  startedAt: 5, runtimeStartedAt: 6, runtimeFinishedAt: 7, finishedAt: 8)
        let other = AnnouncementClaim(token: "writer-2", at: Self.claim.at + 1, manifestKey: Self.claim.manifestKey)
        try await replay([
            .progressed(0.1),
            .dispatched(pool: "default", model: "m", at: 10, queuePosition: 4, message: "m1"),
            .dispatched(pool: "default", model: "m", at: 11, queuePosition: 9, message: "m2"),  // a duplicate message: refused
            .dispatched(pool: "default", model: "m", at: 11, queuePosition: 9, message: "m1"),  // its redelivery: allowed, first facts stand
            .dispatched(pool: "default", model: "m", at: 11, queuePosition: 9),  // an earlier release's dispatcher: refused
            .dispatchRecorded(pool: "default", model: "m", at: 12, queuePosition: 1),  // refused: not running
            .started(worker: "w1", at: 20),
            .dispatchRecorded(pool: "default", model: "m", at: 13, queuePosition: 1),  // the first dispatch time stands
            .progressed(0.55),
            .previewed(key: "previews/t/preview.jpg", at: 21),
            .previewed(key: "previews/t/preview.jpg", at: 22),
            .finished(done, claim: Self.claim),
            .previewed(key: "previews/t/preview.jpg", at: 23),  // refused: the task is over
            .finished(TaskConclusion(status: .failed, error: TaskFailure(code: "x", message: "y"), finishedAt: 9), claim: other),
            .cancelled(at: 30, message: "too late"),
            .claimAnnouncement(other),  // the first claim is fresh
            .releaseAnnouncement(token: "writer-2"),
            .purged(at: 39),  // refused: the ending is not announced yet
            .announced(token: "writer-1", at: 40, webhookNotRequested: true),
            .webhookDeadLettered,
            .purged(at: 41),  // a tombstone from here on
            .purged(at: 42),  // again: the first time stands
        ], on: fixture.transport.tasks, start: record)
        #expect(try await fixture.transport.tasks.get(id: record.id)?.purgedAt == 41)
        #expect(try await fixture.transport.tasks.get(id: record.id)?.callback?.secret == nil)
        #expect(try await fixture.transport.tasks.apply(.progressed(0.5), to: "no-such-task") == .notFound)
    }

    @Test(arguments: TransportKind.available)
    func cancelsSubmitFailuresAndClearedFieldsRoundTrip(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let record = makeRecord()
        _ = try await fixture.transport.tasks.create(record)
        try await replay([
            .submitFailed, .resubmitted, .resubmitted,
            .dispatched(pool: "default", model: "m", at: 10, queuePosition: nil),
            .cancelled(at: 30, message: "cancelled by the client"),
            .started(worker: "w1", at: 31),
            .finished(TaskConclusion(status: .cancelled, error: TaskFailure(code: "cancelled", message: "c"), finishedAt: 32), claim: Self.claim),
            .claimAnnouncement(Self.claim),
            .releaseAnnouncement(token: Self.claim.token),
            .claimAnnouncement(AnnouncementClaim(token: "writer-3", at: Self.claim.at + 5, manifestKey: Self.claim.manifestKey)),
            .announced(token: "writer-3", at: 50, webhookNotRequested: false),
        ], on: fixture.transport.tasks, start: record)
    }

    /// Records written before the lifecycle change (layout 1: the whole record as JSON) are read
    /// as they are and move on under the new code.
    @Test(arguments: ["succeeded-2-dispatched", "succeeded-3-running", "cancelled-4-terminal"])
    func recordsWrittenBeforeTheChangeMoveOn(_ name: String) async throws {
        for kind in TransportKind.available {
            let fixture = try await StackFixture.make(kind)
            var record = try JSONDecoder().decode(TaskRecord.self, from: Data(try fixtureRecordText(name).utf8))
            record.expiresAt = EpochClock.nowMillis() + 3_600_000
            record.id = TaskID.generate()
            record.idempotencyKey = nil
            try await storeAsBefore(record, in: fixture)
            #expect(try await fixture.transport.tasks.get(id: record.id) == record)
            let done = TaskConclusion(status: .succeeded, worker: "w9", finishedAt: EpochClock.nowMillis())
            try await replay([
                .started(worker: "w9", at: 100), .progressed(0.5), .finished(done, claim: Self.claim),
                .claimAnnouncement(Self.claim), .announced(token: Self.claim.token, at: 200, webhookNotRequested: false),
            ], on: fixture.transport.tasks, start: record)
        }
    }

    /// The `record` text of a fixture under `Tests/Fixtures/upgrade-v1/records/`.
    func fixtureRecordText(_ name: String) throws -> String {
        let data = try Data(contentsOf: fixtureURL("upgrade-v1/records/\(name).json"))
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try #require(object?["record"] as? String)
    }

    /// Writes a record as sdq wrote it before: the embedded row is unchanged; the DynamoDB item
    /// had `id`, `status`, `version`, `record` and `expires_at` only.
    func storeAsBefore(_ record: TaskRecord, in fixture: StackFixture) async throws {
        switch fixture.kind {
        case .embedded:
            _ = try await fixture.transport.tasks.create(record)
        case .aws:
            let transport = try #require(fixture.transport as? AWSTransport)
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let text = String(decoding: try encoder.encode(record), as: UTF8.self)
            try await transport.dynamo.putItem(DynamoPut(table: fixture.names.tasksTable, item: [
                "id": .string(record.id), "status": .string(record.status.rawValue), "version": .int(3),
                "record": .string(text), "expires_at": .int(record.expiresAt / 1000),
            ]))
        }
    }
}
