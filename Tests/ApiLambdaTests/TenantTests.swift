@testable import ApiLambda
import Crypto
import Foundation
import SDQAWS
import SDQPlatform
import SDQTestSupport
import Testing

/// Tenants: every read, cancel, upload use and idempotency key belongs to the API key's tenant.
@Suite struct TenantTests {
    static let keyFile = """
        keys:
          - name: alice
            key: k1-alice
          - name: bob
            key: "20240101"
            role: client
          - name: ops
            key_sha256: \(APIKeyringFixture.sha256("k3-ops"))
            role: operator
            quotas: {submissions_per_minute: 600}
        """

    static func harness() async throws -> APIHandlerTests.Harness {
        var harness = try await APIHandlerTests.Harness.make()
        harness = APIHandlerTests.Harness(
            fixture: harness.fixture,
            handler: APIHandler(
                context: harness.fixture.context, logger: testLogger(),
                keyring: try APIKeyring.parse(file: keyFile, source: "keys.yaml"),
                signer: ObjectURLSigner(secret: Data(repeating: 7, count: 32)), publicBaseURL: "http://api.test"))
        return harness
    }

    static func auth(_ key: String) -> [String: String] { ["Authorization": "Bearer \(key)"] }

    @Test func anotherTenantsTaskIsNotFoundExactlyAsAMissingOne() async throws {
        let harness = try await Self.harness()
        let submitted = await harness.post(#"{"prompt": "alice's", "context": {"secret": "alice"}}"#, headers: Self.auth("k1-alice"))
        #expect(submitted.status == 202)
        let id = try #require(try JSONValue.parse(submitted.body)["id"]?.stringValue)
        let record = try #require(try await harness.fixture.transport.tasks.get(id: id))
        #expect(record.tenant == "alice")

        let foreign = await harness.get("/v1/tasks/\(id)", headers: Self.auth("20240101"))
        let missing = await harness.get("/v1/tasks/01aaaaaaaaaaaaaaaaaaaaaaaa", headers: Self.auth("20240101"))
        #expect(foreign.status == 404 && missing.status == 404)
        #expect(APIHandlerTests.error(foreign).code == "task_not_found")
        #expect(!String(decoding: foreign.body, as: UTF8.self).contains("alice"))
        let cancel = await harness.handler.handle(APIRequest(method: "DELETE", path: "/v1/tasks/\(id)", headers: Self.auth("20240101")))
        #expect(cancel.status == 404)
        #expect(try await harness.fixture.transport.tasks.get(id: id)?.status == .queued)

        // The owner and an operator see it; an operator may cancel it.
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("k1-alice")).status == 200)
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("k3-ops")).status == 200)
        let cancelled = await harness.handler.handle(APIRequest(method: "DELETE", path: "/v1/tasks/\(id)", headers: Self.auth("k3-ops")))
        #expect(cancelled.status == 200)
    }

    @Test func idempotencyKeysBelongToTheirTenant() async throws {
        let harness = try await Self.harness()
        let body = #"{"prompt": "same", "context": {"owner": "alice"}}"#
        let alice = await harness.post(body, headers: Self.auth("k1-alice").merging(["Idempotency-Key": "shared"]) { $1 })
        let bob = await harness.post(body, headers: Self.auth("20240101").merging(["Idempotency-Key": "shared"]) { $1 })
        #expect(alice.status == 202 && bob.status == 202)
        #expect(bob.headers["idempotent-replayed"] == nil)
        let aliceID = try JSONValue.parse(alice.body)["id"]?.stringValue
        let bobID = try JSONValue.parse(bob.body)["id"]?.stringValue
        #expect(aliceID != bobID)
        // A different body under alice's key is bob's own new task, not a 409 that reveals alice's.
        #expect(await harness.post(body, headers: Self.auth("k1-alice").merging(["Idempotency-Key": "alice-only"]) { $1 }).status == 202)
        let otherKey = await harness.post(#"{"prompt": "bob"}"#, headers: Self.auth("20240101").merging(["Idempotency-Key": "alice-only"]) { $1 })
        #expect(otherKey.status == 202 && otherKey.headers["idempotent-replayed"] == nil)
        // A key cannot spell another tenant's stored form.
        let forged = await harness.post(body, headers: Self.auth("20240101").merging(["Idempotency-Key": "alice|shared"]) { $1 })
        #expect(forged.status == 400 && APIHandlerTests.error(forged).field == "Idempotency-Key")
        // Within a tenant, replays and conflicts work as before.
        let replay = await harness.post(body, headers: Self.auth("20240101").merging(["Idempotency-Key": "shared"]) { $1 })
        #expect(replay.headers["idempotent-replayed"] == "true")
        #expect(try JSONValue.parse(replay.body)["id"]?.stringValue == bobID)
        let conflict = await harness.post(#"{"prompt": "changed"}"#, headers: Self.auth("20240101").merging(["Idempotency-Key": "shared"]) { $1 })
        #expect(conflict.status == 409)
        let bobTask = try #require(bobID)
        let record = try #require(try await harness.fixture.transport.tasks.get(id: bobTask))
        #expect(record.idempotencyKey == "bob|shared" && record.clientIdempotencyKey == "shared")
    }

    @Test func anotherTenantsUploadCannotBeUsed() async throws {
        let harness = try await Self.harness()
        let created = await harness.handler.handle(APIRequest(
            method: "POST", path: "/v1/uploads", headers: Self.auth("k1-alice"), body: Data(#"{"content_type": "image/png"}"#.utf8)))
        let key = try #require(try JSONValue.parse(created.body)["key"]?.stringValue)
        #expect(key.hasPrefix("uploads/alice/"))
        let url = try #require(try JSONValue.parse(created.body)["url"]?.stringValue)
        let (path, query) = APIRequest.splitTarget(String(url.dropFirst("http://api.test".count)))
        let put = await harness.handler.handle(APIRequest(
            method: "PUT", path: path, query: query, headers: ["content-type": "image/png"], body: Data([0x89, 0x50])))
        #expect(put.status == 200)
        let body = #"{"prompt": "x", "kind": "img2img", "init_image": {"upload": "\#(key)"}}"#
        let bob = await harness.post(body, headers: Self.auth("20240101"))
        #expect(bob.status == 422 && APIHandlerTests.error(bob).code == "upload_not_found")
        #expect(await harness.post(body, headers: Self.auth("k1-alice")).status == 202)
    }

    @Test func referenceTaskIDsBelongToTheirTenant() async throws {
        let harness = try await Self.harness()
        let body = try referenceSample("t2i.json")
        func post(_ key: String) async throws -> (id: String?, replayed: Bool) {
            let response = await harness.handler.handle(APIRequest(method: "POST", path: "/v1alpha2", headers: Self.auth(key), body: body))
            #expect(response.status == 200)
            return (try JSONValue.parse(response.body)["task_id"]?.stringValue, response.headers["idempotent-replayed"] == "true")
        }
        let alice = try await post("k1-alice")
        let bob = try await post("20240101")
        #expect(alice.id != nil && alice.id != bob.id && !bob.replayed)
        let again = try await post("20240101")
        #expect(again.id == bob.id && again.replayed)
        // Each tenant's SNS notification carries its own reference id and tenant.
        let bobTask = try #require(bob.id)
        let record = try #require(try await harness.fixture.transport.tasks.get(id: bobTask))
        #expect(record.tenant == "bob" && record.clientIdempotencyKey == "v1alpha2:test-t2i")
    }

    @Test func directLambdaInvocationsAreScopedToo() async throws {
        let harness = try await Self.harness()
        let submitted = await harness.post(#"{"prompt": "alice's"}"#, headers: Self.auth("k1-alice"))
        let id = try #require(try JSONValue.parse(submitted.body)["id"]?.stringValue)
        func direct(_ payload: String) async throws -> APIResponse {
            guard case .direct(let request)? = LambdaEvent.parse(Data(payload.utf8)) else { throw CancellationError() }
            return await harness.handler.handle(request)
        }
        #expect(try await direct(#"{"action": "status", "id": "\#(id)", "api_key": "20240101"}"#).status == 404)
        #expect(try await direct(#"{"action": "cancel", "id": "\#(id)", "api_key": "20240101"}"#).status == 404)
        #expect(try await direct(#"{"action": "status", "id": "\#(id)"}"#).status == 401)
        #expect(try await direct(#"{"action": "status", "id": "\#(id)", "api_key": "k1-alice"}"#).status == 200)
    }

    @Test func keyFilesAreCheckedWhole() throws {
        let ring = try APIKeyring.parse(file: Self.keyFile, source: "keys.yaml")
        #expect(ring.tenant(presenting: "k1-alice") == Tenant(name: "alice"))
        #expect(ring.tenant(presenting: "20240101")?.name == "bob")  // digits stay a key
        #expect(
            ring.tenant(presenting: "k3-ops")
                == Tenant(name: "ops", role: .operator, quotas: TenantQuotas(submissionRate: SubmissionRate(perMinute: 600, burst: 600))))
        #expect(ring.tenant(presenting: "k1-alicE") == nil && ring.tenant(presenting: nil) == nil)
        #expect(ring.entries[2].quotas == .object(["submissions_per_minute": .number(600)]))
        // Unnamed keys keep the key- + hash names records already carry.
        let unnamed = APIKeyring(keys: ["k-one"])
        #expect(unnamed.tenant(presenting: "k-one")?.name == "key-" + APIKeyringFixture.sha256("k-one").prefix(12))
        #expect(APIKeyring.open.tenant(presenting: "anything") == .anonymous)

        for (text, complaint) in [
            ("keys: []", "lists no key"), ("nothing: 1", "keys list"), ("keys:\n  - name: a\n", "exactly one of key"),
            ("keys:\n  - key: x\n    role: admin\n", "client or operator"), ("keys:\n  - key: x\n    name: anonymous\n", "name must be"),
            ("keys:\n  - key: x\n    name: a\n  - key: y\n    name: A\n", "only in case"), ("keys:\n  - key: x\n    colour: red\n", "colour"),
            ("keys:\n  - key: x\n    name: a\n  - key: y\n    name: a\n    role: operator\n", "another role"),
            ("keys:\n  - key: x\n    name: a\n  - key: x\n    name: b\n", "same key appears twice"),
            ("keys:\n  - key_sha256: abc\n", "64 hex"),
        ] {
            #expect(throws: ConfigurationError.self) { try APIKeyring.parse(file: text, source: "f") }
            do { _ = try APIKeyring.parse(file: text, source: "f") } catch { #expect(error.message.contains(complaint), "\(error.message)") }
        }
    }

    /// Rotation without a redeploy: the key file is re-read while the API runs; two keys are one
    /// tenant while clients move; a removed key stops working at the next read; a file that
    /// breaks keeps the keys in force.
    @Test func aRotatedKeyFileTakesEffectWithoutARestart() async throws {
        let directory = try TemporaryDirectory()
        let file = directory.url.appendingPathComponent("keys.yaml")
        func write(_ text: String) throws { try text.write(to: file, atomically: true, encoding: .utf8) }
        try write("keys:\n  - name: alice\n    key: old-key\n")
        let environment = ["SDQ_API_KEYS_FILE": file.path]
        let first = try await APIKeyring.load(environment: environment)
        let keys = LiveKeyring(first, interval: .milliseconds(50)) { () async throws(ConfigurationError) -> APIKeyring in
            try await APIKeyring.load(environment: environment)
        }
        let base = try await APIHandlerTests.Harness.make()
        let harness = APIHandlerTests.Harness(
            fixture: base.fixture, handler: APIHandler(context: base.fixture.context, logger: testLogger(), keys: keys))
        let submitted = await harness.post(#"{"prompt": "before the rotation"}"#, headers: Self.auth("old-key"))
        #expect(submitted.status == 202)
        let id = try #require(try JSONValue.parse(submitted.body)["id"]?.stringValue)
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("new-key")).status == 401)

        // Step 1: both keys, one tenant.
        try write("keys:\n  - name: alice\n    key: old-key\n  - name: alice\n    key: new-key\n")
        try await Task.sleep(for: .milliseconds(80))
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("new-key")).status == 200, "the new key is the same tenant")
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("old-key")).status == 200)

        // Step 2: the old key is revoked.
        try write("keys:\n  - name: alice\n    key: new-key\n")
        try await Task.sleep(for: .milliseconds(80))
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("old-key")).status == 401, "a revoked key stops working")
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("new-key")).status == 200)

        // A broken file keeps the keys in force.
        try write("keys: [")
        try await Task.sleep(for: .milliseconds(80))
        #expect(await harness.get("/v1/tasks/\(id)", headers: Self.auth("new-key")).status == 200)
        try await Task.sleep(for: .milliseconds(60))
        guard case .failed = await keys.refreshIfDue() else {
            Issue.record("a broken key file is reported")
            return
        }
        #expect(keys.current.tenant(presenting: "new-key")?.name == "alice")
    }

    @Test func twoKeysOfOneTenantShareItsTasks() throws {
        let ring = try APIKeyring.parse(file: "keys:\n  - name: alice\n    key: a1\n  - name: alice\n    key: a2\n", source: "f")
        #expect(ring.tenant(presenting: "a1") == ring.tenant(presenting: "a2"))
        #expect(ring.tenant(presenting: "a1")?.name == "alice")
    }

    @Test func aKeyListThatYieldsNothingRefusesToStart() async throws {
        #expect(throws: ConfigurationError.self) { try SDQConfiguration.fromEnvironment(["SDQ_API_KEYS": " , "]) }
        await #expect(throws: ConfigurationError.self) { try await APIKeyring.load(environment: ["SDQ_API_KEYS": ","]) }
        await #expect(throws: ConfigurationError.self) {
            try await APIKeyring.load(environment: ["SDQ_API_KEYS": "a", "SDQ_API_KEYS_FILE": "/nonexistent"])
        }
        let directory = try TemporaryDirectory()
        let file = directory.url.appendingPathComponent("keys.yaml")
        try Self.keyFile.write(to: file, atomically: true, encoding: .utf8)
        let ring = try await APIKeyring.load(environment: ["SDQ_API_KEYS_FILE": file.path])
        #expect(ring.entries.map(\.tenant.name) == ["alice", "bob", "ops"])
        #expect(try await APIKeyring.load(environment: [:]).isOpen)
    }

    @Test(.enabled(if: AWSTestEnvironment.available, "needs an AWS emulator (moto)"))
    func keyFilesCanLiveInSecretsManagerOrSSM() async throws {
        let variables = AWSTestEnvironment.variables()
        let client = SecretsClient(client: AWSHTTPClient(
            environment: AWSEnvironment(variables), credentials: EnvironmentCredentialProvider(variables: variables)))
        let name = AWSTestEnvironment.uniqueStack()
        _ = try await client.client.json(
            service: "secretsmanager", target: "secretsmanager.CreateSecret", ["Name": .string(name), "SecretString": .string(Self.keyFile)], version: "1.1")
        _ = try await client.client.json(
            service: "ssm", target: "AmazonSSM.PutParameter", ["Name": .string("/\(name)/keys"), "Value": .string(Self.keyFile), "Type": "SecureString"],
            version: "1.1")
        for source in ["secretsmanager:\(name)", "ssm:/\(name)/keys"] {
            let ring = try await APIKeyring.load(environment: variables.merging(["SDQ_API_KEYS_FILE": source]) { $1 })
            #expect(ring.tenant(presenting: "k3-ops")?.role == .operator, "\(source)")
        }
        await #expect(throws: ConfigurationError.self) {
            try await APIKeyring.load(environment: variables.merging(["SDQ_API_KEYS_FILE": "secretsmanager:\(name)-missing"]) { $1 })
        }
    }
}

enum APIKeyringFixture {
    static func sha256(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
