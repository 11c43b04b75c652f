@testable import ApiLambda
import Crypto
import Foundation
import SDQAWS
import SDQPlatform
import SDQTestSupport
import Testing

/// Audit records: operator actions and security events with who, what, when and from where,
/// readable by operators only.
@Suite struct AuditTests {
    static let keyFile = """
        keys:
          - {name: alice, key: k-alice, quotas: {max_in_flight: 1}}
          - {name: ops, key: k-ops, role: operator}
        """

    static func auth(_ key: String) -> [String: String] { ["Authorization": "Bearer \(key)", "host": "api.test"] }

    static func request(_ method: String, _ target: String, key: String, from peer: String = "203.0.113.7", body: String = "") -> APIRequest {
        let (path, query) = APIRequest.splitTarget(target)
        var request = APIRequest(method: method, path: path, query: query, headers: auth(key), body: Data(body.utf8))
        request.peerAddress = peer
        return request
    }

    static func records(_ harness: APIHandlerTests.Harness, _ query: String = "") async throws -> [JSONValue] {
        let response = await harness.handler.handle(request("GET", "/v1/audit\(query)", key: "k-ops"))
        #expect(response.status == 200)
        return try JSONValue.parse(response.body)["records"]?.arrayValue ?? []
    }

    @Test func securityEventsAndOperatorActionsAreRecorded() async throws {
        let harness = try await APIHandlerTests.Harness.make(keyFile: Self.keyFile)
        let handler = harness.handler
        // An unknown key, twice from one source: one record, naming the key by a digest only.
        #expect(await handler.handle(Self.request("GET", "/v1/tasks", key: "stolen-key")).status == 401)
        #expect(await handler.handle(Self.request("GET", "/v1/tasks", key: "stolen-key")).status == 401)
        // Alice's second task is over her in-flight quota.
        let submitted = await handler.handle(Self.request("POST", "/v1/tasks", key: "k-alice", body: #"{"prompt": "a"}"#))
        let id = try #require(try JSONValue.parse(submitted.body)["id"]?.stringValue)
        #expect(await handler.handle(Self.request("POST", "/v1/tasks", key: "k-alice", body: #"{"prompt": "b"}"#)).status == 429)
        // An operator cancels alice's task.
        #expect(await handler.handle(Self.request("DELETE", "/v1/tasks/\(id)", key: "k-ops", from: "198.51.100.2")).status == 200)

        let records = try await Self.records(harness)
        let actions = records.compactMap { $0["action"]?.stringValue }
        #expect(actions == ["task.cancel", "quota.refused", "auth.refused"], "newest first: \(actions)")
        let refused = try #require(records.last)
        let digest = Hex.lowercase(SHA256.hash(data: Data("stolen-key".utf8)).prefix(6))
        #expect(refused["actor"]?.stringValue == "unknown" && refused["key_sha256_prefix"]?.stringValue == digest)
        #expect(refused["source"]?.stringValue == "203.0.113.7")
        #expect(!String(decoding: try JSONValue.array(records).serialized(), as: UTF8.self).contains("stolen-key"))
        #expect(records[1]["actor"]?.stringValue == "alice" && records[1]["target"]?.stringValue == "max_in_flight")
        let cancel = records[0]
        #expect(cancel["actor"]?.stringValue == "ops" && cancel["role"]?.stringValue == "operator")
        #expect(cancel["target"]?.stringValue == id && cancel["source"]?.stringValue == "198.51.100.2")
        #expect(cancel["detail"]?.stringValue == "owner alice" && cancel["at"]?.numberValue != nil)

        // Only operators read it; pages follow the cursor.
        #expect(await handler.handle(Self.request("GET", "/v1/audit", key: "k-alice")).status == 403)
        let first = try JSONValue.parse(await handler.handle(Self.request("GET", "/v1/audit?limit=2", key: "k-ops")).body)
        let cursor = try #require(first["next_cursor"]?.stringValue)
        let rest = try await Self.records(harness, "?limit=2&cursor=\(cursor)")
        #expect(rest.compactMap { $0["action"]?.stringValue } == ["auth.refused"])
        #expect(await handler.handle(Self.request("GET", "/v1/audit?cursor=x", key: "k-ops")).status == 400)
    }
}

/// The audit log on both stores: newest first, paged, expired records hidden.
@Suite struct AuditStoreTests {
    @Test(arguments: TransportKind.available)
    func auditRecordsArePagedNewestFirst(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let store = fixture.transport.tasks
        let now = EpochClock.nowMillis()
        for (offset, action) in ["a", "b", "c"].enumerated() {
            let at = now - 3_000 + Int64(offset) * 1_000
            try await store.appendAudit(AuditRecord(id: TaskID.generate(now: at), at: at, actor: "ops", action: action, expiresAt: now + 60_000))
        }
        try await store.appendAudit(AuditRecord(id: TaskID.generate(now: now - 10_000), at: now - 10_000, actor: "x", action: "old", expiresAt: now - 1))
        let first = try await store.audit(AuditQuery(limit: 2))
        #expect(first.records.map(\.action) == ["c", "b"] && first.more)
        let last = try #require(first.records.last)
        let second = try await store.audit(AuditQuery(limit: 2, after: (last.at, last.id)))
        #expect(second.records.map(\.action) == ["a"])
        #expect(try await store.audit(AuditQuery(since: now - 1_500)).records.map(\.action) == ["c"])
        // Audit records never show up as tasks.
        #expect(try await store.list(TaskListQuery(tenant: "ops")).records.isEmpty)
    }
}
