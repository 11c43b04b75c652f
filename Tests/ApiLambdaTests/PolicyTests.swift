@testable import ApiLambda
import Foundation
import Hummingbird
import NIOCore
import SDQAWS
import SDQPlatform
import SDQTestSupport
import Testing

/// The prompt policy at submission: a block list and an HTTP callout per tenant or pool, refusing
/// with `400 policy_refused` before anything is stored or queued.
@Suite struct PolicyTests {
    static func harness(keyFile: String, poolPolicy: PromptPolicy? = nil, allowPrivate: Bool = false) async throws -> APIHandlerTests.Harness {
        var guarded = PoolSpec(name: "guarded", runtime: "emulator", models: ["emulator-v1"])
        guarded.policy = poolPolicy
        let pools = try PoolConfiguration(pools: [PoolSpec(name: "default", runtime: "emulator", models: ["emulator-v1"]), guarded])
        let fixture = try await EmbeddedFixture.make(pools: pools)
        let handler = APIHandler(
            context: fixture.context, logger: testLogger(), keyring: try APIKeyring.parse(file: keyFile, source: "keys.yaml"),
            signer: ObjectURLSigner(secret: Data(repeating: 7, count: 32)), publicBaseURL: "http://api.test",
            webhookPolicy: OutboundURLPolicy(allowPrivate: allowPrivate))
        return APIHandlerTests.Harness(fixture: fixture, handler: handler)
    }

    static func auth(_ key: String) -> [String: String] { ["Authorization": "Bearer \(key)"] }

    @Test func aBlockedTermRefusesTheTaskBeforeAnythingIsStored() async throws {
        let keys = "keys:\n  - {name: alice, key: k-alice, policy: {block: [gore, \"red panda\"]}}\n  - {name: ops, key: k-ops, role: operator}\n"
        let harness = try await Self.harness(keyFile: keys, poolPolicy: PromptPolicy(block: ["lighthouse"]))
        let refused = await harness.post(#"{"prompt": "a GORE scene"}"#, headers: Self.auth("k-alice"))
        #expect(refused.status == 400)
        #expect(APIHandlerTests.error(refused) == ("policy_refused", "prompt"))
        #expect(String(decoding: refused.body, as: UTF8.self).contains("gore"))
        #expect(await harness.post(#"{"prompt": "two Red  Panda"}"#, headers: Self.auth("k-alice")).status == 202, "words, not spacing")
        #expect(await harness.post(#"{"prompt": "a red panda, at dusk"}"#, headers: Self.auth("k-alice")).status == 400)
        #expect(await harness.post(#"{"prompt": "gorey details"}"#, headers: Self.auth("k-alice")).status == 202, "whole words only")
        #expect(await harness.post(#"{"prompt": "a cat", "negative_prompt": "gore"}"#, headers: Self.auth("k-alice")).status == 202)
        // The pool's own policy applies to everyone who sends tasks there.
        let pooled = await harness.post(#"{"prompt": "a lighthouse", "pool": "guarded"}"#, headers: Self.auth("k-ops"))
        #expect(pooled.status == 400 && APIHandlerTests.error(pooled).code == "policy_refused")
        #expect(await harness.post(#"{"prompt": "a lighthouse"}"#, headers: Self.auth("k-ops")).status == 202, "other pools are not")
        let stored = try await harness.fixture.transport.tasks.list(TaskListQuery(tenant: "alice", limit: 10)).records
        #expect(stored.map(\.status).count == 3, "refused tasks are not stored")
        let audit = try await harness.fixture.transport.tasks.audit(AuditQuery())
        #expect(audit.records.filter { $0.action == "policy.refused" }.count == 3)
        #expect(!audit.records.contains { ($0.detail ?? "").contains("scene") }, "the audit names the reason, not the prompt")
    }

    @Test func workflowTextInputsAreChecked() {
        var submission = TaskSubmission()
        submission.kind = .comfyuiWorkflow
        submission.runtimeRequest = Data(#"{"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a gore scene", "clip": ["4", 1]}}, "9": {"inputs": {"filename_prefix": "gore"}}}"#.utf8)
        #expect(APIHandler.policyTexts(submission).contains("a gore scene"))
        #expect(!APIHandler.policyTexts(submission).contains("gore"), "file names are not prompts")
    }

    static func calloutRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/check") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 16)
            let json = try JSONValue.parse(Data(body.readableBytesView))
            let prompt = json["prompt"]?.stringValue ?? ""
            let answer: JSONValue = prompt.contains("deny") ? ["allow": false, "reason": .string("not for tenant \(json["tenant"]?.stringValue ?? "?")")] : ["allow": true]
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: answer.serialized())))
        }
        router.post("/slow") { _, _ -> Response in
            try await Task.sleep(for: .seconds(5))
            return Response(status: .ok)
        }
        router.post("/broken") { _, _ in Response(status: .internalServerError) }
        return router
    }

    @Test func theCalloutDecidesWithinItsBudgetUnderTheWebhookAddressRules() async throws {
        try await withLoopbackServer(Self.calloutRouter()) { port in
            let base = "http://127.0.0.1:\(port)"
            let keys = """
                keys:
                  - {name: alice, key: k-alice, policy: {callout: {url: "\(base)/check", timeout_ms: 5000}}}
                  - {name: slow, key: k-slow, policy: {callout: {url: "\(base)/slow", timeout_ms: 200}}}
                  - {name: lenient, key: k-lenient, policy: {callout: {url: "\(base)/broken", on_error: allow}}}
                """
            let harness = try await Self.harness(keyFile: keys, allowPrivate: true)
            #expect(await harness.post(#"{"prompt": "fine"}"#, headers: Self.auth("k-alice")).status == 202)
            let denied = await harness.post(#"{"prompt": "please deny"}"#, headers: Self.auth("k-alice"))
            #expect(denied.status == 400 && APIHandlerTests.error(denied) == ("policy_refused", "prompt"))
            #expect(String(decoding: denied.body, as: UTF8.self).contains("not for tenant alice"))
            let started = ContinuousClock.now
            let slow = await harness.post(#"{"prompt": "fine"}"#, headers: Self.auth("k-slow"))
            #expect(slow.status == 503 && APIHandlerTests.error(slow).code == "policy_unavailable")
            // 200 ms against a callout that answers after 5 s (the slack is for a loaded machine).
            #expect(ContinuousClock.now - started < .seconds(4), "the budget holds")
            #expect(await harness.post(#"{"prompt": "fine"}"#, headers: Self.auth("k-lenient")).status == 202, "on_error: allow")

            // Without SDQ_WEBHOOK_ALLOW_PRIVATE a loopback destination is refused, as a webhook's is.
            let strict = try await Self.harness(keyFile: keys)
            #expect(await strict.post(#"{"prompt": "fine"}"#, headers: Self.auth("k-alice")).status == 503)
        }
    }

    @Test(arguments: [
        ("{colour: red}", "colour"), ("{callout: {url: \"ftp://x\"}}", "http"), ("{callout: {url: \"https://x\", timeout_ms: 60000}}", "timeout_ms"),
        ("{callout: {url: \"https://x\", on_error: maybe}}", "on_error"), ("{block: [\"\"]}", "block"),
    ])
    func aBadPolicyIsAConfigurationError(_ policy: String, _ named: String) {
        #expect {
            try APIKeyring.parse(file: "keys:\n  - {name: x, key: k, policy: \(policy)}\n", source: "keys.yaml")
        } throws: { error in
            (error as? ConfigurationError)?.message.contains(named) ?? false
        }
    }
}
