import Foundation
import SDQPlatform

/// A request in the reference guidance's format (`POST /v1alpha2`, "SD on EKS" v1alpha2):
/// `{"task": {"metadata": {id, runtime, tasktype, prefix, context}, "content": {…}}}`, where
/// `content` is the runtime-native request (A1111 for `text-to-image`, `image-to-image` and
/// `extra-single-image`; a ComfyUI API-format workflow for `pipeline`).
///
/// It is translated into the v1 request and validated by the same rules (``TaskSubmission``), so
/// the task takes the same path through the pipeline. Choices where the format is silent:
/// - `metadata.id` is the idempotency key: the same id with the same body is the same task, with
///   another body a 409. The answer's `id` echoes it (clients correlate by it); `task_id` is
///   sdq's id for `GET /v1/tasks/{id}`.
/// - `metadata.runtime` names the pool when a pool of that name exists; otherwise the task is
///   routed as a v1 task without `pool` would be, and the answer's `runtime` names the pool chosen.
/// - The generation parameters sdq validates (`prompt`, `seed`, `width`, …) are taken from
///   `content`; everything else in `content` reaches the runtime unchanged. `send_images` is
///   dropped (the worker always needs the images); `init_images` (one image: an http(s) URL the
///   worker fetches, or base64) and the extras `image` become the task's init image.
/// - `metadata.prefix` is not honoured: outputs live under `outputs/{task_id}/`, which the
///   answer's `output_location` names.
/// - `metadata.context` (when not empty) is the task's client context, returned in results.
struct ReferenceTask {
    var submission: TaskSubmission
    var clientID: String?
    var requestedRuntime: String?

    static let taskTypes: [String: TaskKind] = [
        "text-to-image": TaskKind.txt2img, "image-to-image": .img2img, "extra-single-image": .extras, "pipeline": .comfyuiWorkflow,
    ]
    /// `content` fields that become v1 task fields.
    static let coreFields: Set<String> = [
        "prompt", "negative_prompt", "seed", "width", "height", "steps", "cfg_scale", "sampler_name", "batch_size",
        "denoising_strength",
    ]
    /// `content` fields sdq sets itself and ignores when a client sends them.
    static let dropped: Set<String> = ["send_images", "save_images"]

    static func parse(_ body: Data, limits: RequestLimits, pools: PoolConfiguration) throws(APIError) -> ReferenceTask {
        let root = try Fields.object(body)
        guard case .object(let task)? = root["task"] else { throw .missing("task") }
        guard case .object(let metadata)? = task["metadata"] else { throw .missing("task.metadata") }
        guard case .object(let content)? = task["content"] else { throw .missing("task.content") }
        let meta = Fields(object: metadata)
        guard let taskType = try prefixed("task.metadata.", { () throws(APIError) in try meta.string("tasktype") }) else {
            throw .missing("task.metadata.tasktype")
        }
        guard let kind = taskTypes[taskType] else {
            throw .invalid("task.metadata.tasktype", "tasktype must be one of \(taskTypes.keys.sorted().joined(separator: ", "))")
        }
        let clientID = try prefixed("task.metadata.", { () throws(APIError) in try meta.string("id") })
        if let clientID, clientID.isEmpty || clientID.unicodeScalars.count > 200 {
            throw .invalid("task.metadata.id", "id must be 1...200 characters")
        }
        let runtime = try prefixed("task.metadata.", { () throws(APIError) in try meta.string("runtime") })

        var v1: [String: JSONValue] = ["kind": .string(kind.rawValue)]
        if let runtime, pools.pool(named: runtime) != nil { v1["pool"] = .string(runtime) }
        switch metadata["context"] {
        case nil, .null?, .string("")?: break
        case let context?: v1["context"] = context
        }
        if kind == .comfyuiWorkflow {
            v1["prompt"] = .string("")
            v1["workflow"] = .object(content)
            try validateWorkflow(content)
        } else {
            var options: [String: JSONValue] = [:]
            for (name, value) in content where !dropped.contains(name) {
                if coreFields.contains(name) {
                    v1[name] = value
                } else if name == "init_images" || (kind == .extras && name == "image") {
                    v1["init_image"] = try initImage(value, field: "task.content.\(name)")
                } else {
                    options[name] = value
                }
            }
            if kind == .extras, v1["prompt"] == nil { v1["prompt"] = .string("") }
            if !options.isEmpty { v1["runtime_options"] = .object(options) }
        }
        do {
            let submission = try TaskSubmission.parse(JSONValue.object(v1).serialized(), limits: limits, pools: pools)
            return ReferenceTask(submission: submission, clientID: clientID, requestedRuntime: runtime)
        } catch {
            throw renamed(error, kind: kind)
        }
    }

    /// `init_images` (an array of one) or the extras `image`: a URL or base64 text.
    private static func initImage(_ value: JSONValue, field: String) throws(APIError) -> JSONValue {
        var item = value
        if case .array(let items) = value {
            guard items.count == 1 else { throw .invalid(field, "\(field) must hold exactly one image") }
            item = items[0]
        }
        guard let text = item.stringValue, !text.isEmpty else { throw .invalid(field, "\(field) must be a URL or base64 text") }
        let lowered = text.lowercased()
        if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") { return .object(["url": .string(text)]) }
        return .object(["base64": .string(text)])
    }

    /// A ComfyUI API-format workflow: node id → `{class_type, inputs}`.
    private static func validateWorkflow(_ content: [String: JSONValue]) throws(APIError) {
        guard !content.isEmpty else { throw .invalid("task.content", "the workflow has no nodes") }
        for (id, node) in content.sorted(by: { $0.key < $1.key }) {
            guard case .object(let fields) = node, case .string(let type)? = fields["class_type"], !type.isEmpty else {
                throw .invalid("task.content.\(id)", "node \(id) must be an object with a class_type")
            }
            if let inputs = fields["inputs"], case .object = inputs {} else if fields["inputs"] != nil {
                throw .invalid("task.content.\(id).inputs", "inputs of node \(id) must be an object")
            }
        }
    }

    /// Points an error of the v1 rules at the field of the reference request.
    private static func renamed(_ error: APIError, kind: TaskKind) -> APIError {
        guard let field = error.field else { return error }
        if field.hasPrefix("runtime_options.") { return error.naming("task.content." + field.dropFirst("runtime_options.".count)) }
        if field.hasPrefix("workflow.") { return error.naming("task.content." + field.dropFirst("workflow.".count)) }
        if field.hasPrefix("init_image") { return error.naming(kind == .extras ? "task.content.image" : "task.content.init_images") }
        switch field {
        case "context": return error.naming("task.metadata.context")
        case "pool": return error.naming("task.metadata.runtime")
        case "workflow": return error.naming("task.content")
        default: return error.naming("task.content." + field)
        }
    }

    private static func prefixed<T>(_ prefix: String, _ body: () throws(APIError) -> T) throws(APIError) -> T {
        do { return try body() } catch { throw error.naming(error.field.map { prefix + $0 }) }
    }
}

extension APIHandler {
    /// `POST /v1alpha2` (also `/v1alpha2/task`): a task in the reference format, answered 200 in
    /// its shape `{id, runtime, output_location}` plus `task_id` and `status_url`.
    func submitReference(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        let limits = try checkedLimits(request)
        let reference = try ReferenceTask.parse(request.body, limits: limits, pools: context.pools)
        let key = reference.clientID.map { "v1alpha2:" + $0 }
        let (record, replayed, quotaHeaders) = try await accept(
            reference.submission, idempotencyKey: key, digest: Self.digest(request.body), tenant: tenant, request: request)
        let bucket = context.transport.objects.bucket
        let answer: JSONValue = .object([
            "id": .string(reference.clientID ?? record.id),
            "task_id": .string(record.id),
            "runtime": .string(record.pool),
            "output_location": .string("s3://\(bucket)/outputs/\(record.id)/"),
            "status_url": .string(baseURL(request) + "/v1/tasks/\(record.id)"),
        ])
        var headers = quotaHeaders
        headers["location"] = "/v1/tasks/\(record.id)"
        if replayed { headers["idempotent-replayed"] = "true" }
        return .json(200, answer.serialized(), headers: headers)
    }
}

extension TaskSubmission {
    /// Validates a reference-format (`POST /v1alpha2`) body and returns the task it asks for, with
    /// the same errors the API answers (fuzzing and tools use it without a running stack).
    public static func parseReference(_ body: Data, limits: RequestLimits, pools: PoolConfiguration) throws(APIError) -> TaskSubmission {
        try ReferenceTask.parse(body, limits: limits, pools: pools).submission
    }
}
