import Foundation
import SDQAWS
import SDQMessages
import SDQPlatform

/// How a task record is laid out in its DynamoDB item, so that each lifecycle event is one
/// conditional `UpdateItem` with no read before it.
///
/// Layout 2 (`layout` = 2): `record` holds the record's JSON with every field that changes after
/// submission reset to its empty value (the *base*, written once), and each changing field lives
/// in an attribute of its own (the *overlay*: `status`, `progress`, `worker`, `images`,
/// `finished_at`, `claim`, …), absent while the field is empty. Reading applies the overlay to the
/// base.
///
/// Layout 1 (no `layout` attribute; what sdq wrote before): `record` holds the whole record and
/// only `status` and `version` sit beside it. Such items are read as they are; the first event
/// applied to one rewrites it in layout 2 with a read and a conditional put (`version`), so tasks
/// in flight during an upgrade finish under the new code. Old code reading a layout-2 item sees
/// only its base: during a rolling upgrade, old API instances report a task's submission state
/// until they are replaced.
enum TaskItemLayout {
    static let current: Int64 = 2
    static let layoutAttribute = "layout"
    /// The tenant whose in-flight slot the task holds (``TaskRecord/inFlightSlot``).
    static let slotAttribute = "in_flight_slot"

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    static func json<T: Encodable>(_ value: T) throws(TransportError) -> String {
        guard let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) else {
            throw .storage("cannot encode a task field")
        }
        return text
    }

    static func parse<T: Decodable>(_ type: T.Type, _ value: DynamoValue?) -> T? {
        guard let text = value?.stringValue else { return nil }
        return try? JSONDecoder().decode(type, from: Data(text.utf8))
    }

    /// The full item of `record` in layout 2.
    static func item(_ record: TaskRecord, version: Int64, ttlAttribute: String) throws(TransportError) -> DynamoItem {
        var base = record
        base.status = .queued
        base.progress = 0
        base.previewKey = nil
        base.previewAt = nil
        base.images = []
        base.error = nil
        base.worker = nil
        base.cancelRequested = false
        base.attempts = nil
        base.queuePositionAtDispatch = nil
        base.timings = TaskTimings(submittedAt: record.timings.submittedAt)
        base.manifestKey = nil
        base.announceClaim = nil
        base.announceClaimAt = nil
        base.announcedAt = nil
        base.dispatchMessage = nil
        base.webhook = nil
        var item: DynamoItem = [
            "id": .string(record.id), "version": .int(version), "record": .string(try json(base)),
            ttlAttribute: .int(record.expiresAt / 1000), layoutAttribute: .int(current),
            // The keys of the task-list index (AWSTaskStore.listIndex).
            "tenant": .string(record.tenant ?? "anonymous"), "submitted_at": .int(record.timings.submittedAt ?? 0),
        ]
        var fields: [TaskField] = [
            .status(record.status), .progress(record.progress), .pool(record.pool), .model(record.model),
            .cancelRequested(record.cancelRequested), .error(record.error),
            .announceClaim(token: record.announceClaim, at: record.announceClaimAt),
        ]
        if !record.images.isEmpty { fields.append(.images(record.images)) }
        if let worker = record.worker { fields.append(.worker(worker)) }
        if let key = record.previewKey, let at = record.previewAt { fields.append(.preview(key: key, at: at)) }
        if let attempts = record.attempts { fields.append(.attempts(attempts)) }
        if let position = record.queuePositionAtDispatch { fields.append(.queuePositionIfAbsent(position)) }
        let t = record.timings
        if let at = t.dispatchedAt { fields.append(.dispatchedAtIfAbsent(at)) }
        if let at = t.startedAt { fields.append(.startedAt(at)) }
        if let at = t.runtimeStartedAt { fields.append(.runtimeStartedAt(at)) }
        if let at = t.runtimeFinishedAt { fields.append(.runtimeFinishedAt(at)) }
        if let at = t.finishedAt { fields.append(.finishedAt(at)) }
        if let at = t.workerReceivedAt { fields.append(.workerReceivedAt(at)) }
        if let at = t.inputsReadyAt { fields.append(.inputsReadyAt(at)) }
        if let at = t.uploadedAt { fields.append(.uploadedAt(at)) }
        if let key = record.manifestKey { fields.append(.manifestKey(key)) }
        if let at = record.announcedAt { fields.append(.announcedAt(at)) }
        if let message = record.dispatchMessage { fields.append(.dispatchMessage(message)) }
        for field in fields {
            for (name, value) in try attributes(field) { item[name] = value }
        }
        if let webhook = record.webhook { item["webhook"] = .string(try json(webhook)) }
        // Set once at creation (it is in `record` too); a top-level attribute so that an
        // ending's fast path can require its absence (AWSTaskStore.apply).
        if let slot = record.inFlightSlot { item[slotAttribute] = .string(slot) }
        return item
    }

    /// The attributes a field writes (nil values: the attribute is removed).
    static func attributes(_ field: TaskField) throws(TransportError) -> [(String, DynamoValue?)] {
        switch field {
        case .status(let value): [("status", .string(value.rawValue))]
        case .progress(let value): [("progress", .number(String(value)))]
        case .preview(let key, let at): [("preview_key", .string(key)), ("preview_at", .int(at))]
        case .worker(let value): [("worker", .string(value))]
        case .pool(let value): [("pool", .string(value))]
        case .model(let value): [("model", .string(value))]
        case .images(let value): [("images", value.isEmpty ? nil : .string(try json(value)))]
        case .error(let value): [("error", try value.map { v throws(TransportError) in .string(try json(v)) })]
        case .cancelRequested(let value): [("cancel_requested", .bool(value))]
        case .attempts(let value): [("attempts", .int(Int64(value)))]
        case .queuePositionIfAbsent(let value): [("queue_position", .int(Int64(value)))]
        case .dispatchedAtIfAbsent(let value): [("dispatched_at", .int(value))]
        case .startedAt(let value): [("started_at", .int(value))]
        case .runtimeStartedAt(let value): [("runtime_started_at", .int(value))]
        case .runtimeFinishedAt(let value): [("runtime_finished_at", .int(value))]
        case .finishedAt(let value): [("finished_at", .int(value))]
        case .workerReceivedAt(let value): [("worker_received_at", .int(value))]
        case .inputsReadyAt(let value): [("inputs_ready_at", .int(value))]
        case .uploadedAt(let value): [("uploaded_at", .int(value))]
        case .manifestKey(let value): [("manifest_key", .string(value))]
        case .announceClaim(let token, let at): [("claim", token.map { .string($0) }), ("claim_at", at.map { .int($0) })]
        case .announcedAt(let value): [("announced_at", .int(value))]
        case .dispatchMessage(let value): [("dispatch_message", .string(value))]
        }
    }

    /// Whether a field keeps a value already there (`if_not_exists`).
    static func keepsExisting(_ field: TaskField) -> Bool {
        switch field {
        case .queuePositionIfAbsent, .dispatchedAtIfAbsent: true
        default: false
        }
    }

    /// The record an item holds, in either layout.
    static func record(from item: DynamoItem) throws(TransportError) -> (TaskRecord, Int64) {
        guard var record = parse(TaskRecord.self, item["record"]) else { throw .storage("corrupt task item") }
        let version = item["version"]?.intValue ?? 0
        guard item[layoutAttribute]?.intValue == current else { return (record, version) }
        if let status = item["status"]?.stringValue.flatMap(TaskStatus.init(rawValue:)) { record.status = status }
        if let text = item["progress"], case .number(let value) = text { record.progress = Double(value) ?? 0 }
        if let value = item["worker"]?.stringValue { record.worker = value }
        record.previewKey = item["preview_key"]?.stringValue
        record.previewAt = item["preview_at"]?.intValue
        if let value = item["pool"]?.stringValue { record.pool = value }
        if let value = item["model"]?.stringValue { record.model = value }
        record.images = parse([ImageRecord].self, item["images"]) ?? []
        record.error = parse(TaskFailure.self, item["error"])
        if case .bool(let value)? = item["cancel_requested"] { record.cancelRequested = value }
        record.attempts = item["attempts"]?.intValue.map { Int($0) }
        record.queuePositionAtDispatch = item["queue_position"]?.intValue.map { Int($0) }
        record.timings.dispatchedAt = item["dispatched_at"]?.intValue
        record.timings.startedAt = item["started_at"]?.intValue
        record.timings.runtimeStartedAt = item["runtime_started_at"]?.intValue
        record.timings.runtimeFinishedAt = item["runtime_finished_at"]?.intValue
        record.timings.finishedAt = item["finished_at"]?.intValue
        record.timings.workerReceivedAt = item["worker_received_at"]?.intValue
        record.timings.inputsReadyAt = item["inputs_ready_at"]?.intValue
        record.timings.uploadedAt = item["uploaded_at"]?.intValue
        record.manifestKey = item["manifest_key"]?.stringValue
        record.dispatchMessage = item["dispatch_message"]?.stringValue
        record.announceClaim = item["claim"]?.stringValue
        record.announceClaimAt = item["claim_at"]?.intValue
        record.announcedAt = item["announced_at"]?.intValue
        record.webhook = parse(WebhookState.self, item["webhook"])
        return (record, version)
    }
}
