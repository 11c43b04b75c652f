import Foundation
import SDQMessages
import SDQPlatform

extension ResultWriter {
    /// Announces an ended task whose claim `claim` holds: writes its manifest, publishes its
    /// notification and queues its `completed` webhook event, then marks the record announced.
    ///
    /// Only the claim's holder sends. If sending fails the claim is released, so the retry (ours
    /// or another writer's) claims at once; a writer that crashes after sending and before marking
    /// leaves a claim that goes stale after ``TaskLifecycle/claimLifetimeMillis``, and whoever
    /// takes it over sends again: at-least-once, with the same webhook id, so receivers can drop
    /// the repeat.
    func announce(_ record: TaskRecord, claim: AnnouncementClaim) async throws(TransportError) {
        let store = context.transport.tasks
        do {
            try await writeManifest(for: record)
            try await publishNotification(record)
            if let callback = record.callback, callback.effectiveEvents.contains(WebhookEvents.completed) {
                try await WebhookEvents.enqueue(
                    event: WebhookEvents.completed, taskID: record.id, data: try await webhookData(record), trace: TraceCarrier.current(),
                    context: context)
            }
        } catch {
            do {
                _ = try await store.apply(.releaseAnnouncement(token: claim.token), to: record.id)
            } catch let releaseError {
                // The claim goes stale instead, and is taken over then.
                logger.warning("cannot release an announcement claim", metadata: ["task_id": "\(record.id)", "error": "\(releaseError)"])
            }
            throw error
        }
        let notRequested = record.callback.map { !$0.effectiveEvents.contains(WebhookEvents.completed) } ?? false
        _ = try await store.apply(.announced(token: claim.token, at: EpochClock.nowMillis(), webhookNotRequested: notRequested), to: record.id)
    }

    /// The notification's message attributes, for subscription filter policies.
    public static func notificationAttributes(_ record: TaskRecord) -> [String: String] {
        [
            "status": record.status.rawValue, "pool": record.pool.isEmpty ? "none" : record.pool,
            "tenant": record.tenant ?? "anonymous", "content-type": "application/json",
        ]
    }

    /// The notification body: the status document (images as `s3://` URLs) plus the reference
    /// guidance's result fields, so its subscribers keep working: `id` (the reference task id for
    /// `/v1alpha2` tasks, else the sdq id), `runtime` (the pool), `result` (true when succeeded),
    /// `status`, `image_url` (list of `s3://` URLs), `output_url` (the manifest) and `context`.
    public static func notificationBody(_ record: TaskRecord, bucket: String) throws(TransportError) -> JSONValue {
        let document = TaskDocument(record: record) { "s3://\(bucket)/\($0.key)" }
        var body = try fields(of: document)
        let referenceID = record.clientIdempotencyKey.flatMap { $0.hasPrefix("v1alpha2:") ? String($0.dropFirst(9)) : nil }
        body["task_id"] = .string(record.id)
        body["id"] = .string(referenceID ?? record.id)
        body["runtime"] = .string(record.pool)
        body["result"] = .bool(record.status == .succeeded)
        body["image_url"] = .array(record.images.map { .string("s3://\(bucket)/\($0.key)") })
        body["output_url"] = .string("s3://\(bucket)/\(manifestKey(for: record.id))")
        body["context"] = document.context ?? .object([:])
        return .object(body)
    }

    /// A status document's fields, without its `webhook` (delivery state is not sent to clients).
    static func fields(of document: TaskDocument) throws(TransportError) -> [String: JSONValue] {
        let value: JSONValue
        do { value = try document.jsonValue() } catch {
            throw TransportError(code: "document_unserialisable", message: "status of \(document.id): \(error)")
        }
        guard case .object(var fields) = value else {
            throw TransportError(code: "document_unserialisable", message: "status of \(document.id) is not an object")
        }
        fields.removeValue(forKey: "webhook")
        return fields
    }

    private func publishNotification(_ record: TaskRecord) async throws(TransportError) {
        let body = try Self.notificationBody(record, bucket: context.transport.objects.bucket)
        try await context.transport.topic(named: context.names.notificationsTopic)
            .publish(body: String(decoding: body.serialized(), as: UTF8.self), attributes: Self.notificationAttributes(record))
    }

    /// The `data` of a webhook event: the status document with fetchable image URLs where the
    /// store can presign them (S3, valid 24 hours), and `status_url`, the task's status endpoint
    /// (absolute when `SDQ_PUBLIC_URL` is set), where fresh links can always be had.
    func webhookData(_ record: TaskRecord) async throws(TransportError) -> JSONValue {
        var urls: [String: String] = [:]
        let objects = context.transport.objects
        for image in record.images {
            let presigned = try? await objects.presignedGetURL(key: image.key, expiresIn: .seconds(24 * 3600))
            urls[image.key] = (presigned ?? nil) ?? "s3://\(objects.bucket)/\(image.key)"
        }
        var data = try Self.fields(of: TaskDocument(record: record) { urls[$0.key] ?? "" })
        let base = publicBaseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? ""
        data["status_url"] = .string("\(base)/v1/tasks/\(record.id)")
        return .object(data)
    }
}
