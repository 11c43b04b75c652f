@testable import ApiLambda
import Foundation
import SDQAWS
import SDQPlatform
import SDQTestSupport
import Testing

/// Deletion on request: `DELETE /v1/tasks/{id}?purge=true` removes an ended task's objects and
/// leaves a tombstone; an operator purges a whole tenant.
@Suite struct PurgeTests {
    static let keyFile = """
        keys:
          - {name: alice, key: k-alice}
          - {name: bob, key: k-bob}
          - {name: ops, key: k-ops, role: operator}
        """

    static func harness() async throws -> APIHandlerTests.Harness { try await .make(keyFile: keyFile) }

    static func auth(_ key: String) -> [String: String] { ["Authorization": "Bearer \(key)"] }

    static func delete(_ harness: APIHandlerTests.Harness, _ path: String, key: String) async -> APIResponse {
        let (p, q) = APIRequest.splitTarget(path)
        return await harness.handler.handle(APIRequest(method: "DELETE", path: p, query: q, headers: auth(key).merging(["host": "api.test"]) { a, _ in a }))
    }

    /// Ends task `id` as a worker and a result-writer would: two images stored, the manifest and
    /// a preview written, the ending announced (`announce: false` leaves it being finalised).
    static func finish(_ id: String, in harness: APIHandlerTests.Harness, announce: Bool = true) async throws -> [String] {
        let objects = harness.fixture.transport.objects
        let images = (0..<2).map {
            ImageRecord(key: "outputs/\(id)/image-\($0).png", contentType: "image/png", width: 64, height: 64, seed: 1, sha256: "00", size: 3)
        }
        let keys = images.map(\.key) + ["results/\(id)/manifest.json", "previews/\(id)/preview.jpg", "inputs/\(id)/init-0"]
        for key in keys { try await objects.put(key: key, data: Data("x".utf8), contentType: "application/octet-stream") }
        let store = harness.fixture.transport.tasks
        _ = try await store.apply(.previewed(key: "previews/\(id)/preview.jpg", at: 5), to: id)
        let claim = AnnouncementClaim(token: "writer", at: EpochClock.nowMillis(), manifestKey: "results/\(id)/manifest.json")
        let done = TaskConclusion(status: .succeeded, images: images, runtimeStartedAt: 10, runtimeFinishedAt: 2_010, finishedAt: 3_000)
        guard case .applied = try await store.apply(.finished(done, claim: claim), to: id) else { throw Failure("not finished") }
        if announce { _ = try await store.apply(.announced(token: "writer", at: 3_001, webhookNotRequested: true), to: id) }
        return keys
    }

    @Test func aPurgedTaskLosesItsObjectsAndKeepsATombstone() async throws {
        let harness = try await Self.harness()
        let body = #"{"prompt": "a secret prompt", "context": {"note": "private"}}"#
        let headers = Self.auth("k-alice").merging(["Idempotency-Key": "once"]) { $1 }
        let submitted = await harness.post(body, headers: headers)
        let id = try #require(try JSONValue.parse(submitted.body)["id"]?.stringValue)
        #expect(await Self.delete(harness, "/v1/tasks/\(id)?purge=true", key: "k-alice").status == 409, "a queued task is cancelled first")
        let keys = try await Self.finish(id, in: harness)

        let purged = await Self.delete(harness, "/v1/tasks/\(id)?purge=true", key: "k-alice")
        #expect(purged.status == 200)
        let document = try JSONValue.parse(purged.body)
        #expect(document["purged_at"]?.numberValue != nil && document["images"]?.arrayValue?.isEmpty == true)
        #expect(document["usage"]?["images"]?.numberValue == 2 && document["usage"]?["gpu_seconds"]?.numberValue == 2)
        #expect(document["context"] == nil)
        for key in keys { #expect(try await !harness.fixture.transport.objects.exists(key: key), "\(key) is gone") }
        let tombstone = try #require(try await harness.fixture.transport.tasks.get(id: id))
        #expect(tombstone.parameters == nil && tombstone.context == nil && tombstone.status == .succeeded)
        #expect(!String(decoding: try JSONEncoder().encode(tombstone), as: UTF8.self).contains("secret prompt"))

        // A repeat of the request is still this task; a second purge changes nothing.
        let replay = await harness.post(body, headers: headers)
        #expect(try JSONValue.parse(replay.body)["id"]?.stringValue == id && replay.headers["idempotent-replayed"] == "true")
        #expect(await Self.delete(harness, "/v1/tasks/\(id)?purge=true", key: "k-alice").status == 200)
        #expect(try await harness.fixture.transport.tasks.get(id: id)?.purgedAt == tombstone.purgedAt)
        // Usage still counts it.
        let usage = try JSONValue.parse(await harness.get("/v1/usage", headers: Self.auth("k-alice")).body)
        #expect(usage["totals"]?["images"]?.numberValue == 2)
    }

    @Test func onlyTheOwnerOrAnOperatorPurgesAndOnlyOnceTheEndingIsWritten() async throws {
        let harness = try await Self.harness()
        let submitted = await harness.post(#"{"prompt": "p"}"#, headers: Self.auth("k-alice"))
        let id = try #require(try JSONValue.parse(submitted.body)["id"]?.stringValue)
        let keys = try await Self.finish(id, in: harness, announce: false)
        let finishing = await Self.delete(harness, "/v1/tasks/\(id)?purge=true", key: "k-alice")
        #expect(finishing.status == 409 && APIHandlerTests.error(finishing).code == "task_finishing")
        _ = try await harness.fixture.transport.tasks.apply(.announced(token: "writer", at: 3_001, webhookNotRequested: true), to: id)
        #expect(await Self.delete(harness, "/v1/tasks/\(id)?purge=true", key: "k-bob").status == 404, "another tenant's task")
        #expect(try await harness.fixture.transport.objects.exists(key: keys[0]))
        #expect(await Self.delete(harness, "/v1/tasks/\(id)?purge=maybe", key: "k-alice").status == 400)
        #expect(await Self.delete(harness, "/v1/tasks/\(id)?purge=true", key: "k-ops").status == 200)
        #expect(try await !harness.fixture.transport.objects.exists(key: keys[0]))
    }

    @Test func anOperatorPurgesAWholeTenant() async throws {
        let harness = try await Self.harness()
        var ids: [String] = []
        for prompt in ["one", "two"] {
            let submitted = await harness.post(#"{"prompt": "\#(prompt)"}"#, headers: Self.auth("k-bob"))
            ids.append(try #require(try JSONValue.parse(submitted.body)["id"]?.stringValue))
        }
        let aliceTask = try #require(try JSONValue.parse(await harness.post(#"{"prompt": "mine"}"#, headers: Self.auth("k-alice")).body)["id"]?.stringValue)
        let keys = try await Self.finish(ids[0], in: harness)
        _ = try await Self.finish(aliceTask, in: harness)
        #expect(await Self.delete(harness, "/v1/tenants/bob/tasks", key: "k-bob").status == 403)
        let first = await Self.delete(harness, "/v1/tenants/bob/tasks", key: "k-ops")
        #expect(first.status == 200)
        let counts = try JSONValue.parse(first.body)
        #expect(counts["purged"]?.numberValue == 1 && counts["cancelled"]?.numberValue == 1 && counts["pending"]?.numberValue == 1)
        #expect(try await harness.fixture.transport.tasks.get(id: ids[1])?.status == .cancelled)
        #expect(try await !harness.fixture.transport.objects.exists(key: keys[0]))
        #expect(try await harness.fixture.transport.tasks.get(id: aliceTask)?.purgedAt == nil, "another tenant is untouched")
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
