import AsyncHTTPClient
import Foundation
import NIOCore
import SDQPlatform

extension APIHandler {
    /// Checks a submission against the tenant's and the pool's prompt policies (``PromptPolicy``)
    /// before anything is stored or queued: a blocked term or a callout's refusal is
    /// `400 policy_refused` with the reason; a callout that fails is `503 policy_unavailable`
    /// unless its `on_error` is `allow`.
    func checkPolicy(_ submission: TaskSubmission, pool: PoolSpec, model: String, tenant: Tenant, request: APIRequest) async throws(APIError) {
        let policies = [tenant.policy, pool.policy].compactMap { $0 }
        guard !policies.isEmpty else { return }
        let texts = Self.policyTexts(submission)
        for policy in policies {
            if let term = policy.blockedTerm(in: texts) {
                try await refuseByPolicy("the prompt contains the blocked term \"\(term)\"", tenant: tenant, pool: pool, request: request)
            }
            guard let callout = policy.callout else { continue }
            let verdict: (allow: Bool, reason: String?)
            do {
                verdict = try await call(callout, submission: submission, pool: pool, model: model, tenant: tenant)
            } catch {
                logger.warning(
                    "the prompt policy callout failed", metadata: ["url": "\(callout.url)", "error": "\(error)", "tenant": "\(tenant.name)"])
                if callout.allowOnError { continue }
                throw APIError(status: 503, code: "policy_unavailable", message: "the prompt policy could not be checked; try again")
            }
            if !verdict.allow {
                try await refuseByPolicy(verdict.reason ?? "refused by the prompt policy", tenant: tenant, pool: pool, request: request)
            }
        }
    }

    private func refuseByPolicy(_ reason: String, tenant: Tenant, pool: PoolSpec, request: APIRequest) async throws(APIError) {
        await audit("policy.refused", by: tenant, target: pool.name, detail: reason, request: request)
        throw APIError(status: 400, code: "policy_refused", message: reason, field: "prompt")
    }

    /// The texts a policy reads: the prompt and, for a ComfyUI workflow, every string input
    /// named like a text or a prompt (`text`, `text_g`, `positive`, …). Never the negative prompt.
    static func policyTexts(_ submission: TaskSubmission) -> [String] {
        var texts = [submission.prompt]
        if submission.kind == .comfyuiWorkflow, let data = submission.runtimeRequest, let workflow = try? JSONValue.parse(data, maxDepth: .max) {
            func walk(_ value: JSONValue, key: String?) {
                switch value {
                case .string(let text):
                    if let key = key?.lowercased(), key.contains("text") || key.contains("prompt") || key == "positive" { texts.append(text) }
                case .object(let object): for (name, child) in object { walk(child, key: name) }
                case .array(let array): for child in array { walk(child, key: key) }
                default: break
                }
            }
            walk(workflow, key: nil)
        }
        return texts
    }

    /// One callout: the destination checked as webhooks are, the answer within the budget.
    private func call(_ callout: PromptPolicy.Callout, submission: TaskSubmission, pool: PoolSpec, model: String, tenant: Tenant)
        async throws -> (allow: Bool, reason: String?)
    {
        struct CalloutError: Error, CustomStringConvertible { let description: String }
        guard let url = URL(string: callout.url) else { throw CalloutError(description: "not a URL") }
        let address: String?
        switch await webhookPolicy.vet(url) {
        case .allowed(let checked): address = checked
        case .refused(let reason): throw CalloutError(description: "destination refused: \(reason)")
        case .unresolved(let error): throw CalloutError(description: "\(error)")
        }
        var request = HTTPClientRequest(url: callout.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let body: JSONValue = .object([
            "tenant": .string(tenant.name), "pool": .string(pool.name), "model": .string(model), "kind": .string(submission.kind.rawValue),
            "prompt": .string(submission.prompt), "negative_prompt": .string(submission.negativePrompt),
        ])
        request.body = .bytes(ByteBuffer(bytes: body.serialized()))
        let (status, data) = try await OutboundHTTP.execute(
            request, url: url, address: address, timeout: .milliseconds(Int64(callout.timeoutMillis))
        ) { response in
            (response.status.code, Data(try await response.body.collect(upTo: 64 * 1024).readableBytesView))
        }
        let answer = try? JSONValue.parse(data)
        guard status == 200, case .bool(let allow)? = answer?["allow"] else {
            throw CalloutError(description: "answered \(status) without {\"allow\": true|false}")
        }
        let reason = answer?["reason"]?.stringValue.map { String($0.prefix(500)) }
        return (allow, reason)
    }
}
