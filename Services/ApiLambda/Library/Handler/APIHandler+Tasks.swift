import Crypto
import Foundation
import SDQAWS
import SDQMessages
import SDQPlatform

extension APIHandler {
    /// `POST /v1/tasks`: validate, store inputs, record the task, publish it, answer 202.
    func submit(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        let limits = try checkedLimits(request)
        let submission = try TaskSubmission.parse(request.body, limits: limits, pools: context.pools)
        let idempotencyKey = request.headers["idempotency-key"].map { $0.trimmingWhitespace() }
        // `|` separates a stored key's tenant from the client's key (TaskRecord.scopedIdempotencyKey).
        if let idempotencyKey,
            idempotencyKey.isEmpty || idempotencyKey.count > 255
                || idempotencyKey.unicodeScalars.contains(where: { $0 == "|" || $0.value < 0x20 || $0.value == 0x7f })
        {
            throw APIError(
                status: 400, code: "invalid_header", message: "Idempotency-Key must be 1...255 characters, without | or control characters",
                field: "Idempotency-Key")
        }
        let (record, replayed, quotaHeaders) = try await accept(
            submission, idempotencyKey: idempotencyKey, digest: Self.digest(request.body), tenant: tenant, request: request)
        return try await accepted(record, request: request, replayed: replayed, headers: quotaHeaders)
    }

    /// Refuses a webhook destination that is not http(s) or is, or resolves to, a loopback,
    /// private or link-local address (the instance metadata service included), unless
    /// `SDQ_WEBHOOK_ALLOW_PRIVATE` is set. Every delivery checks again.
    func checkCallback(_ submission: TaskSubmission) async throws(APIError) {
        guard let text = submission.callbackURL, let url = URL(string: text) else { return }
        if let refusal = await webhookPolicy.submissionRefusal(for: url) {
            throw APIError(
                status: 400, code: "callback_refused", message: "callback.url is not allowed: \(refusal)", field: "callback.url")
        }
    }

    /// The request limits, after refusing a body larger than they allow (413).
    func checkedLimits(_ request: APIRequest) throws(APIError) -> RequestLimits {
        let limits = context.pools.limits
        if request.bodyTooLarge || request.body.count > limits.maxBodyBytes {
            throw APIError(status: 413, code: "body_too_large", message: "the request body is larger than \(limits.maxBodyBytes) bytes")
        }
        return limits
    }

    /// Records and publishes a validated submission (shared by every request format). Returns the
    /// task, whether it is a replay of an earlier request with the same idempotency key, and the
    /// tenant's quota headers for the answer.
    ///
    /// Idempotency keys belong to the tenant: the same key from another tenant is another task,
    /// and never reveals that the key is in use. Quotas (``TenantQuotas``) are checked after the
    /// request is validated and before anything is stored: a refusal is a 429 `quota_exceeded`.
    func accept(_ submission: TaskSubmission, idempotencyKey: String?, digest: String, tenant: Tenant, request: APIRequest)
        async throws(APIError) -> (TaskRecord, replayed: Bool, headers: [String: String])
    {
        let now = EpochClock.nowMillis()
        let id = TaskID.generate(now: now)
        let seed = submission.seed >= 0 ? submission.seed : Int64.random(in: 0...Int64(UInt32.max))
        let resolved = try await resolveModels(submission)
        let pool = submission.pool.flatMap { context.pools.pool(named: $0) } ?? resolved.pool
            ?? submission.model.flatMap { context.pools.pool(servingModel: $0) } ?? context.pools.defaultPool
        let model = submission.model ?? pool.defaultModel
        try await checkCallback(submission)
        let quotaHeaders = try await takeSubmission(for: tenant, now: now, request: request)
        try await checkPolicy(submission, pool: pool, model: model, tenant: tenant, request: request)
        let inputs = try await storeInputs(submission, taskID: id, tenant: tenant)

        var record = TaskRecord(
            id: id, pool: pool.name, model: model, kind: submission.kind, seed: seed, width: submission.width,
            height: submission.height, batchSize: submission.batchSize, timings: TaskTimings(submittedAt: now),
            idempotencyKey: idempotencyKey.map { TaskRecord.scopedIdempotencyKey($0, tenant: tenant.name) }, requestDigest: digest,
            context: submission.context, expiresAt: now + Int64(context.pools.limits.taskTTLSeconds) * 1000)
        record.tenant = tenant.name
        record.priority = submission.highPriority ? .high : nil
        record.parameters = submission.parameters(seed: seed, model: model)
        // The task's trace: the request's span, else a fresh (unsampled) one, so the id the status
        // document shows is the one every hop's logs carry.
        var trace = TraceCarrier.current()
        if trace.traceparent.isEmpty { trace = ChannelEnvelope.freshTrace() }
        record.traceID = TraceCarrier.traceID(of: trace.traceparent)
        if let url = submission.callbackURL {
            record.callback = CallbackSpec(url: url, secret: submission.callbackSecret, events: submission.callbackEvents)
            record.webhook = WebhookState()
        }
        let inFlightLimit = tenant.quotas.maxInFlight
        if inFlightLimit != nil { record.inFlightSlot = tenant.name }
        let created: CreateOutcome
        do { created = try await context.transport.tasks.create(record, inFlightLimit: inFlightLimit) } catch { throw .unavailable("\(error)") }
        if case .inFlightLimitReached(let limit) = created {
            throw await inFlightRefusal(tenant: tenant, limit: limit, headers: quotaHeaders, request: request)
        }
        if case .existing(let existing) = created {
            guard existing.tenant ?? Tenant.anonymous.name == tenant.name else {
                // Unreachable with scoped keys; refused as a store fault rather than shown.
                throw .unavailable("idempotency key scope mismatch")
            }
            guard existing.requestDigest == digest else {
                throw APIError(
                    status: 409, code: "idempotency_conflict",
                    message: "Idempotency-Key was already used for a different request", field: "Idempotency-Key")
            }
            return (try await replay(existing, submission: submission, resolved: resolved, now: now, tenant: tenant), true, quotaHeaders)
        }
        var task = generationTask(
            submission, id: id, model: model, seed: seed, inputs: inputs, now: now, tenant: tenant, resolved: resolved)
        task.trace = trace
        try await publish(task)
        return (record, false, quotaHeaders)
    }

    /// Publishes a recorded task. If that fails the task is marked `submit_failed` (nothing would
    /// ever run it) and the client is told to retry; a retry with the same key publishes it again.
    private func publish(_ task: Sdq_V1_GenerationTask) async throws(APIError) {
        do {
            try await context.submissions.publish(task)
        } catch {
            do {
                _ = try await context.transport.tasks.apply(.submitFailed, to: task.id)
            } catch let markError {
                // Left `queued`: a repeat of the request republishes it (see ``replay``).
                logger.warning("cannot mark an unpublished task", metadata: ["task_id": "\(task.id)", "error": "\(markError)"])
            }
            throw .unavailable("\(error)")
        }
    }

    /// A repeat of an earlier request (same Idempotency-Key and body): the same task. A task whose
    /// publish failed, or that has sat `queued` long enough that its publish may have been lost to
    /// a crash, is published again; the dispatcher routes only `queued` tasks, so a duplicate
    /// message costs nothing.
    private func replay(_ existing: TaskRecord, submission: TaskSubmission, resolved: ResolvedModels, now: Int64, tenant: Tenant)
        async throws(APIError)
        -> TaskRecord
    {
        var record = existing
        let publishFailed = TaskLifecycle.transition(for: .resubmitted).permits(existing)
        let stale = existing.status == .queued && existing.timings.dispatchedAt == nil
            && now - (existing.timings.submittedAt ?? now) > Self.republishAfterMillis
        if publishFailed {
            let reset: UpdateOutcome
            do {
                reset = try await context.transport.tasks.apply(.resubmitted, to: existing.id)
            } catch { throw .unavailable("\(error)") }
            if case .applied(let updated) = reset { record = updated }
        }
        if publishFailed || stale {
            let inputs = try await storeInputs(submission, taskID: existing.id, tenant: tenant)
            var task = generationTask(
                submission, id: existing.id, model: existing.model, seed: existing.seed, inputs: inputs, now: now, tenant: tenant,
                resolved: resolved)
            task.submittedAtMs = existing.timings.submittedAt ?? now
            try await publish(task)
        }
        return record
    }

    /// How long a task may sit `queued` before a replayed submission publishes it again.
    static let republishAfterMillis: Int64 = 30_000

    /// 202 with the task's document; with `Prefer: wait=N`, 200 with the final document when the
    /// task ends within N seconds (`Location` either way).
    private func accepted(_ record: TaskRecord, request: APIRequest, replayed: Bool, headers quotaHeaders: [String: String])
        async throws(APIError) -> APIResponse
    {
        var headers = quotaHeaders
        headers["location"] = "/v1/tasks/\(record.id)"
        if replayed { headers["idempotent-replayed"] = "true" }
        var record = record
        if let (budget, seconds) = waitBudget(request) {
            record = await awaitEnd(of: record, within: budget)
            headers["preference-applied"] = "wait=\(seconds)"
            headers["vary"] = "Prefer"
        }
        return try await documentResponse(record.status.isTerminal ? 200 : 202, record, request: request, headers: headers)
    }

    private func storeInputs(_ submission: TaskSubmission, taskID: String, tenant: Tenant) async throws(APIError) -> [Sdq_V1_ObjectRef] {
        guard let image = submission.initImage else { return [] }
        var reference = Sdq_V1_ObjectRef()
        reference.bucket = context.transport.objects.bucket
        switch image {
        case .upload(let key):
            // Another tenant's upload is answered exactly as a missing one.
            guard Self.upload(key, belongsTo: tenant) else {
                throw APIError(status: 422, code: "upload_not_found", message: "no upload \(key)", field: "init_image.upload")
            }
            let exists: Bool
            do { exists = try await context.transport.objects.exists(key: key) } catch {
                if error.code == "invalid_key" { throw .invalid("init_image.upload", "not an upload key") }
                throw .unavailable("\(error)")
            }
            guard exists else { throw APIError(status: 422, code: "upload_not_found", message: "no upload \(key)", field: "init_image.upload") }
            reference.key = key
        case .url(let url):
            reference.bucket = ""
            reference.url = url
        case .inline(let data):
            reference.key = "inputs/\(taskID)/init-0"
            reference.size = UInt64(data.count)
            reference.contentType = "application/octet-stream"
            do {
                try await context.transport.objects.put(key: reference.key, data: data, contentType: reference.contentType)
            } catch { throw .unavailable("\(error)") }
        }
        return [reference]
    }

    private func generationTask(
        _ s: TaskSubmission, id: String, model: String, seed: Int64, inputs: [Sdq_V1_ObjectRef], now: Int64, tenant: Tenant,
        resolved: ResolvedModels
    ) -> Sdq_V1_GenerationTask {
        var task = Sdq_V1_GenerationTask()
        task.assets = resolved.assets
        task.family = resolved.family ?? ""
        task.id = id
        task.tenant = tenant.name  // the dispatcher's fair share keeps one line per tenant
        task.pool = s.pool ?? ""  // empty: the dispatcher routes by model affinity
        task.model = model
        task.kind = s.kind.message
        task.parameters.prompt = s.prompt
        task.parameters.negativePrompt = s.negativePrompt
        task.parameters.seed = seed
        task.parameters.width = UInt32(s.width)
        task.parameters.height = UInt32(s.height)
        task.parameters.steps = UInt32(s.steps)
        task.parameters.cfgScale = s.cfgScale
        task.parameters.samplerName = s.sampler
        task.parameters.batchSize = UInt32(s.batchSize)
        task.parameters.denoisingStrength = s.denoisingStrength
        if let runtimeRequest = s.runtimeRequest { task.runtimeRequest = runtimeRequest }
        task.inputs = inputs
        task.output.bucket = context.transport.objects.bucket
        task.output.prefix = "outputs/\(id)/"
        if let url = s.callbackURL {
            task.callback.url = url
            task.callback.secret = s.callbackSecret ?? ""
            task.callback.events = s.callbackEvents
        }
        task.priority = s.highPriority ? .high : .normal
        if let deadline = s.deadlineSeconds { task.deadlineMs = now + Int64(deadline * 1000) }
        if let context = s.context { task.clientContext = Data(context.utf8) }
        task.attempt = 1
        task.submittedAtMs = now
        task.trace = TraceCarrier.current()
        return task
    }

    /// `DELETE /v1/tasks/{id}`: cancel in any non-terminal state. Another tenant's task answers
    /// 404 and is left alone; an operator key may cancel any task.
    func cancel(_ id: String, request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        _ = try await visibleTask(id, tenant: tenant)
        switch try await applyCancel(id, message: "cancelled by the client") {
        case .notFound: throw .notFound(id)
        case .conflict(let current):
            throw APIError(status: 409, code: "task_finished", message: "task \(id) already \(current.status.rawValue)", field: "id")
        case .applied(let record):
            if tenant.role == .operator {
                await audit("task.cancel", by: tenant, target: id, detail: "owner \(record.tenant ?? Tenant.anonymous.name)", request: request)
            }
            return try await documentResponse(200, record, request: request)
        }
    }

    /// Cancels task `id` (``TaskEvent/cancelled(at:message:)``) and, when that applied, sends its
    /// `cancelled` result. The result-writer writes the manifest of the cancelled task and
    /// announces it (SNS, webhook). If this send fails, the cancel still ends the same way: the
    /// task's own message is still on a queue or held by a worker, and whoever meets a cancelled,
    /// unannounced task forwards a `cancelled` result (``TaskLifecycle/onSkipped(_:)``).
    func applyCancel(_ id: String, message: String) async throws(APIError) -> UpdateOutcome {
        let outcome: UpdateOutcome
        do {
            outcome = try await context.transport.tasks.apply(.cancelled(at: EpochClock.nowMillis(), message: message), to: id)
        } catch { throw .unavailable("\(error)") }
        guard case .applied(let record) = outcome else { return outcome }
        var result = Sdq_V1_TaskResult.cancelled(taskID: id, message: message)
        result.pool = record.pool
        do {
            try await context.results.send(result)
        } catch {
            logger.warning(
                "cannot send the cancel's result; the task's own message will end it", metadata: ["task_id": "\(id)", "error": "\(error)"])
        }
        return outcome
    }

    static func digest(_ body: Data) -> String {
        Hex.lowercase(SHA256.hash(data: body))
    }
}
