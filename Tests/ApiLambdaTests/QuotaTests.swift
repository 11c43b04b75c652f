@testable import ApiLambda
import Foundation
import SDQAWS
import SDQPlatform
import SDQTestSupport
import Testing

/// Per-tenant quotas at the API: a submission rate and a most-in-flight, answered 429
/// `quota_exceeded` with `Retry-After` and the IETF RateLimit fields; other tenants unaffected.
@Suite struct QuotaTests {
    static let keyFile = """
        keys:
          - name: steady
            key: k-steady
            quotas: {submissions_per_minute: 2, burst: 2}
          - name: bounded
            key: k-bounded
            quotas: {max_in_flight: 2}
          - name: free
            key: k-free
        """

    static func harness() async throws -> APIHandlerTests.Harness { try await .make(keyFile: keyFile) }

    static func auth(_ key: String) -> [String: String] { ["Authorization": "Bearer \(key)"] }

    @Test func theRateAnswers429WithRetryAfterAndRateLimitFields() async throws {
        let harness = try await Self.harness()
        let started = ContinuousClock.now
        let first = await harness.post(#"{"prompt": "one"}"#, headers: Self.auth("k-steady"))
        #expect(first.status == 202)
        #expect(first.headers["ratelimit-policy"] == #""submissions";q=2;w=60"#)
        #expect(first.headers["ratelimit"] == #""submissions";r=1;t=30"#)  // the clock is read once per request
        #expect(await harness.post(#"{"prompt": "two"}"#, headers: Self.auth("k-steady")).status == 202)
        let refused = await harness.post(#"{"prompt": "three"}"#, headers: Self.auth("k-steady"))
        #expect(refused.status == 429)
        #expect(APIHandlerTests.error(refused) == ("quota_exceeded", "submissions_per_minute"))
        // 30 s until a token, 60 s until full, less the time the test took between requests.
        let retryAfter = try #require(refused.headers["retry-after"].flatMap { Int($0) })
        let took = Int((ContinuousClock.now - started).components.seconds) + 1
        #expect((30 - took)...30 ~= retryAfter, "\(retryAfter) s after \(took) s of requests")
        #expect(refused.headers["ratelimit"] == #""submissions";r=0;t=\#(retryAfter + 30)"#)
        let page = try await harness.fixture.transport.tasks.list(TaskListQuery(tenant: "steady", limit: 10))
        #expect(page.records.count == 2, "a refused submission stores nothing")
        // Bad input is still a 400 and takes no token; another tenant is not limited.
        #expect(await harness.post(#"{"prompt": 7}"#, headers: Self.auth("k-steady")).status == 400)
        let other = await harness.post(#"{"prompt": "free"}"#, headers: Self.auth("k-free"))
        #expect(other.status == 202 && other.headers["ratelimit"] == nil)
    }

    @Test func theInFlightLimitFreesASlotWhenATaskEnds() async throws {
        let harness = try await Self.harness()
        var ids: [String] = []
        for index in 0..<2 {
            let accepted = await harness.post(#"{"prompt": "bounded \#(index)"}"#, headers: Self.auth("k-bounded"))
            #expect(accepted.status == 202)
            ids.append(try #require(try JSONValue.parse(accepted.body)["id"]?.stringValue))
        }
        let refused = await harness.post(#"{"prompt": "one too many"}"#, headers: Self.auth("k-bounded"))
        #expect(refused.status == 429)
        #expect(APIHandlerTests.error(refused) == ("quota_exceeded", "max_in_flight"))
        #expect(refused.headers["retry-after"] == "5")
        // A repeat of an accepted request is answered as before, not refused.
        let key = Self.auth("k-bounded").merging(["Idempotency-Key": "again"]) { $1 }
        #expect(await harness.post(#"{"prompt": "again"}"#, headers: key).status == 429, "a new request with a key is still new")
        let cancelled = await harness.handler.handle(APIRequest(method: "DELETE", path: "/v1/tasks/\(ids[0])", headers: Self.auth("k-bounded")))
        #expect(cancelled.status == 200)
        #expect(await harness.post(#"{"prompt": "again"}"#, headers: key).status == 202)
        #expect(await harness.post(#"{"prompt": "again"}"#, headers: key).headers["idempotent-replayed"] == "true")
        #expect(try await harness.fixture.transport.tasks.inFlight(tenant: "bounded") == 2)
    }

    @Test(arguments: [
        ("{max_in_flight: 0}", "max_in_flight"), ("{max_in_flight: 2.5}", "max_in_flight"), ("{tasks_per_minute: 6}", "tasks_per_minute"),
        ("{burst: 3}", "burst needs"), ("{submissions_per_minute: -1}", "submissions_per_minute"), ("[1]", "must be an object"),
    ])
    func aBadQuotaIsAConfigurationErrorNamingIt(_ quotas: String, _ named: String) {
        let file = "keys:\n  - name: x\n    key: k\n    quotas: \(quotas)\n"
        #expect {
            try APIKeyring.parse(file: file, source: "keys.yaml")
        } throws: { error in
            "\(error)".contains(named) || ((error as? ConfigurationError)?.message.contains(named) ?? false)
        }
    }

    @Test func quotasAreReadFromTheKeyFile() throws {
        let keyring = try APIKeyring.parse(file: Self.keyFile, source: "keys.yaml")
        #expect(keyring.tenant(presenting: "k-steady")?.quotas == TenantQuotas(submissionRate: SubmissionRate(perMinute: 2, burst: 2)))
        #expect(keyring.tenant(presenting: "k-bounded")?.quotas == TenantQuotas(maxInFlight: 2))
        #expect(keyring.tenant(presenting: "k-free")?.quotas == TenantQuotas.none)
        let defaulted = try APIKeyring.parse(file: "keys:\n  - {name: y, key: k, quotas: {submissions_per_minute: 1.5}}\n", source: "k")
        #expect(defaulted.tenant(presenting: "k")?.quotas.submissionRate == SubmissionRate(perMinute: 1.5, burst: 2))
    }
}
