import SDQPlatform

extension APIHandler {
    /// The name of the submission policy in the IETF `RateLimit-Policy` and `RateLimit` fields.
    static let ratePolicyName = "submissions"

    /// Takes one submission from the tenant's rate (``TenantQuotas/submissionRate``), shared by
    /// every API instance through the task store. Returns the `RateLimit-Policy` and `RateLimit`
    /// fields (draft-ietf-httpapi-ratelimit-headers, structured-field form) for the answer; throws
    /// 429 `quota_exceeded` naming `submissions_per_minute`, with `Retry-After`, when the bucket
    /// is empty. A tenant without a rate costs nothing.
    func takeSubmission(for tenant: Tenant, now: Int64, request: APIRequest) async throws(APIError) -> [String: String] {
        guard let rate = tenant.quotas.submissionRate else { return [:] }
        let decision: RateDecision
        do {
            decision = try await context.transport.tasks.takeSubmission(tenant: tenant.name, rate: rate, now: now)
        } catch { throw .unavailable("\(error)") }
        var headers = Self.rateLimitHeaders(rate, decision)
        guard decision.allowed else {
            headers["retry-after"] = String(decision.retryAfterSeconds)
            logger.notice(
                "submission refused by the tenant's rate",
                metadata: ["tenant": "\(tenant.name)", "retry_after_s": "\(decision.retryAfterSeconds)"])
            if auditThrottle.admits("quota|\(tenant.name)|rate", now: now) {
                await audit("quota.refused", by: tenant, target: "submissions_per_minute", detail: "retry after \(decision.retryAfterSeconds) s", request: request)
            }
            throw APIError(
                status: 429, code: "quota_exceeded",
                message: "tenant \(tenant.name) may submit \(Self.format(rate.perMinute)) tasks a minute (\(rate.burst) at once); "
                    + "try again in \(decision.retryAfterSeconds) s",
                field: "submissions_per_minute", headers: headers)
        }
        return headers
    }

    /// The 429 of a submission beyond the tenant's `max_in_flight`. `Retry-After` is a polling
    /// hint: a slot comes free when one of the tenant's tasks ends (its event stream tells when).
    func inFlightRefusal(tenant: Tenant, limit: Int, headers: [String: String], request: APIRequest) async -> APIError {
        if auditThrottle.admits("quota|\(tenant.name)|in_flight", now: EpochClock.nowMillis()) {
            await audit("quota.refused", by: tenant, target: "max_in_flight", detail: "limit \(limit)", request: request)
        }
        var headers = headers
        headers["retry-after"] = String(Self.inFlightRetryAfterSeconds)
        logger.notice("submission refused by the tenant's in-flight limit", metadata: ["tenant": "\(tenant.name)", "limit": "\(limit)"])
        return APIError(
            status: 429, code: "quota_exceeded",
            message: "tenant \(tenant.name) already has \(limit) tasks queued or running (max_in_flight \(limit)); "
                + "submit again when one ends",
            field: "max_in_flight", headers: headers)
    }

    /// The `Retry-After` of an in-flight refusal, in seconds.
    static let inFlightRetryAfterSeconds = 5

    /// `RateLimit-Policy: "submissions";q=<burst>;w=<seconds to refill>` and
    /// `RateLimit: "submissions";r=<remaining>;t=<seconds until full>`.
    static func rateLimitHeaders(_ rate: SubmissionRate, _ decision: RateDecision) -> [String: String] {
        [
            "ratelimit-policy": "\"\(ratePolicyName)\";q=\(rate.burst);w=\(rate.windowSeconds)",
            "ratelimit": "\"\(ratePolicyName)\";r=\(decision.remaining);t=\(decision.resetSeconds)",
        ]
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
