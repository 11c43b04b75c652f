@testable import ApiLambda
import Foundation
import SDQAWS
import SDQPlatform
import SDQTestSupport
import Testing

/// `GET /v1/usage`: a tenant's tasks by outcome, images and GPU seconds per day or pool, read
/// from the task-list index; operators see every tenant.
@Suite struct UsageTests {
    static let keyFile = """
        keys:
          - {name: alice, key: k-alice}
          - {name: bob, key: k-bob}
          - {name: ops, key: k-ops, role: operator}
        """
    static let day1: Int64 = 1_796_000_000_000  // 2026-11-30T00:53:20Z
    static let day2: Int64 = day1 + 86_400_000

    static func harness() async throws -> APIHandlerTests.Harness { try await .make(keyFile: keyFile) }

    /// A task of `tenant` submitted at `at`, ended `status` after `gpu` ms on the runtime with `images` images.
    static func task(_ tenant: String, at: Int64, status: TaskStatus, gpu: Int64?, images: Int, pool: String = "default") -> TaskRecord {
        var record = makeRecord(status: status, pool: pool)
        record.tenant = tenant
        record.timings.submittedAt = at
        if let gpu {
            record.timings.runtimeStartedAt = at + 1_000
            record.timings.runtimeFinishedAt = at + 1_000 + gpu
        }
        record.images = (0..<images).map { ImageRecord(key: "outputs/\(record.id)/\($0).png", contentType: "image/png", width: 64, height: 64, seed: 1, sha256: "00", size: 1) }
        return record
    }

    static func auth(_ key: String) -> [String: String] { ["Authorization": "Bearer \(key)"] }

    @Test func aTenantSeesItsOwnFiguresByDayAndByPool() async throws {
        let harness = try await Self.harness()
        let store = harness.fixture.transport.tasks
        for record in [
            Self.task("alice", at: Self.day1, status: .succeeded, gpu: 2_500, images: 2),
            Self.task("alice", at: Self.day1 + 60_000, status: .failed, gpu: 500, images: 0),
            Self.task("alice", at: Self.day2, status: .succeeded, gpu: 1_000, images: 1, pool: "other"),
            Self.task("alice", at: Self.day2 + 1, status: .cancelled, gpu: nil, images: 0),
            Self.task("alice", at: Self.day2 + 2 * 86_400_000, status: .succeeded, gpu: 9_000, images: 1),  // outside the period
            Self.task("bob", at: Self.day1, status: .succeeded, gpu: 7_000, images: 4),
        ] { _ = try await store.create(record) }
        let period = "from=\(Self.day1)&to=\(Self.day2 + 86_400_000)"
        let byDay = await harness.get("/v1/usage?\(period)", headers: Self.auth("k-alice"))
        #expect(byDay.status == 200)
        let report = try JSONValue.parse(byDay.body)
        let groups = try #require(report["groups"]?.arrayValue)
        #expect(groups.compactMap { $0["day"]?.stringValue } == ["2026-11-30", "2026-12-01"])
        #expect(groups.allSatisfy { $0["tenant"]?.stringValue == "alice" }, "never another tenant's figures")
        #expect(groups[0]["tasks"]?.numberValue == 2 && groups[0]["gpu_seconds"]?.numberValue == 3 && groups[0]["images"]?.numberValue == 2)
        #expect(groups[0]["outcomes"]?["failed"]?.numberValue == 1)
        #expect(groups[1]["tasks"]?.numberValue == 2 && groups[1]["gpu_seconds"]?.numberValue == 1)
        #expect(report["totals"]?["tasks"]?.numberValue == 4 && report["totals"]?["gpu_seconds"]?.numberValue == 4)
        #expect(report["totals"]?["outcomes"]?["cancelled"]?.numberValue == 1 && report["complete"] == .bool(true))

        let byPool = try JSONValue.parse(await harness.get("/v1/usage?\(period)&group_by=pool", headers: Self.auth("k-alice")).body)
        #expect(byPool["groups"]?.arrayValue?.compactMap { $0["pool"]?.stringValue } == ["default", "other"])

        // An operator sees every tenant, or one.
        let all = try JSONValue.parse(await harness.get("/v1/usage?\(period)", headers: Self.auth("k-ops")).body)
        #expect(Set(all["groups"]?.arrayValue?.compactMap { $0["tenant"]?.stringValue } ?? []) == ["alice", "bob"])
        #expect(all["totals"]?["gpu_seconds"]?.numberValue == 11)
        let bob = try JSONValue.parse(await harness.get("/v1/usage?\(period)&tenant=bob", headers: Self.auth("k-ops")).body)
        #expect(bob["totals"]?["images"]?.numberValue == 4)
    }

    @Test(arguments: [
        ("tenant=bob", "tenant"), ("group_by=week", "group_by"), ("from=200&to=100", "from"), ("colour=red", "colour"),
        ("from=0&to=99999999999999", "from"), ("to=yesterday", "to"),
    ])
    func badParametersAre400sNamingThem(_ query: String, _ field: String) async throws {
        let harness = try await Self.harness()
        let response = await harness.get("/v1/usage?\(query)", headers: Self.auth("k-alice"))
        #expect(response.status == 400)
        #expect(APIHandlerTests.error(response).field == field)
    }

    @Test func anEndedTasksDocumentAndManifestCarryItsOwnFigures() throws {
        let record = Self.task("alice", at: Self.day1, status: .succeeded, gpu: 1_250, images: 2)
        let manifest = try TaskDocument(record: record, manifest: true) { $0.key }.jsonValue()
        #expect(manifest["usage"] == .object(["gpu_seconds": .number(1.25), "images": .number(2)]))
        var running = record
        running.status = .running
        #expect(try TaskDocument(record: running) { $0.key }.jsonValue()["usage"] == nil)
    }
}
