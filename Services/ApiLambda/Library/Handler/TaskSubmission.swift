import Foundation
import SDQAWS
import SDQPlatform

/// A validated `POST /v1/tasks` request.
public struct TaskSubmission: Sendable, Equatable {
    public enum InitImage: Sendable, Equatable {
        /// An object uploaded before (`POST /v1/uploads`), by key.
        case upload(String)
        /// Inline image bytes.
        case inline(Data)
        /// An http(s) URL the worker fetches (under its outbound URL policy).
        case url(String)
    }

    public var kind: TaskKind = .txt2img
    public var prompt: String = ""
    public var negativePrompt: String = ""
    /// −1 means random: the API picks the seed at submission, so every retry repeats the image.
    public var seed: Int64 = -1
    public var width = 512
    public var height = 512
    public var steps = 20
    public var cfgScale = 7.0
    public var sampler = "Euler a"
    public var batchSize = 1
    public var denoisingStrength = 0.75
    public var pool: String?
    public var model: String?
    /// `model_sha256`: the checkpoint's digest the client expects (a registered model only).
    public var modelSHA256: String?
    /// `loras`: registered LoRAs of the checkpoint's family, with weights, applied in order.
    public var loras: [LoraChoice] = []
    public var initImage: InitImage?
    /// Runtime-native JSON merged into the runtime request (`runtime_options`, or the ComfyUI `workflow`).
    public var runtimeRequest: Data?
    public var callbackURL: String?
    public var callbackSecret: String?
    public var callbackEvents: [String] = []
    public var highPriority = false
    public var deadlineSeconds: Double?
    /// Client context as JSON text.
    public var context: String?

    /// A LoRA as a request names it.
    public struct LoraChoice: Sendable, Equatable {
        public var name: String
        public var weight: Double
        /// The digest the client expects, if it pinned one.
        public var sha256: String?
    }

    /// The most LoRAs one task may apply.
    public static let maxLoras = 16

    /// The generation parameters as recorded for the manifest (A1111 names; `seed` as resolved).
    func parameters(seed: Int64, model: String) -> String {
        var fields: [String: JSONValue] = [
            "kind": .string(kind.rawValue), "prompt": .string(prompt), "negative_prompt": .string(negativePrompt),
            "seed": .number(Double(seed)), "width": .number(Double(width)), "height": .number(Double(height)),
            "steps": .number(Double(steps)), "cfg_scale": .number(cfgScale), "sampler_name": .string(sampler),
            "batch_size": .number(Double(batchSize)), "denoising_strength": .number(denoisingStrength), "model": .string(model),
        ]
        if let pool { fields["pool"] = .string(pool) }
        if !loras.isEmpty {
            fields["loras"] = .array(loras.map { .object(["name": .string($0.name), "weight": .number($0.weight)]) })
        }
        // Runtime-native options are kept when small (a workflow with embedded images is not).
        if let runtimeRequest, runtimeRequest.count <= 32 * 1024, let options = try? JSONValue.parse(runtimeRequest, maxDepth: .max) {
            fields[kind == .comfyuiWorkflow ? "workflow" : "runtime_options"] = options
        }
        return String(decoding: JSONValue.object(fields).serialized(), as: UTF8.self)
    }

    /// The fields a request may carry; anything else is refused (A1111 extras go in `runtime_options`).
    static let knownFields: Set<String> = [
        "prompt", "negative_prompt", "seed", "width", "height", "steps", "cfg_scale", "sampler_name", "batch_size",
        "denoising_strength", "kind", "pool", "model", "init_image", "workflow", "runtime_options", "callback",
        "priority", "deadline_seconds", "context", "loras", "model_sha256",
    ]
    /// Runtime request keys that sdq sets from validated task fields; `runtime_options` may not override them.
    static let shadowedByCore: Set<String> = [
        "prompt", "negative_prompt", "seed", "width", "height", "steps", "cfg_scale", "sampler_name", "batch_size", "n_iter",
        "denoising_strength", "init_images", "send_images", "override_settings",
    ]

    /// Parses and validates a request body against `limits` and the configured `pools`.
    public static func parse(_ body: Data, limits: RequestLimits, pools: PoolConfiguration) throws(APIError) -> TaskSubmission {
        let object = try Fields.object(body)
        if let unknown = object.keys.filter({ !knownFields.contains($0) }).sorted().first {
            throw APIError(
                status: 400, code: "unknown_field",
                message: "\(unknown) is not a task field; runtime-specific parameters go in runtime_options", field: unknown)
        }
        var s = TaskSubmission()
        let fields = Fields(object: object)

        if let name = try fields.string("kind") {
            guard let kind = TaskKind(rawValue: name) else {
                let kinds = TaskKind.allCases.map(\.rawValue).sorted().joined(separator: ", ")
                throw .invalid("kind", "kind must be one of \(kinds)")
            }
            s.kind = kind
        }
        guard let prompt = try fields.string("prompt") else { throw .missing("prompt") }
        guard !prompt.trimmingWhitespace().isEmpty || s.kind == .comfyuiWorkflow || s.kind == .extras else {
            throw .invalid("prompt", "prompt must not be empty")
        }
        guard prompt.unicodeScalars.count <= limits.maxPromptLength else {
            throw .invalid("prompt", "prompt is longer than \(limits.maxPromptLength) characters")
        }
        s.prompt = prompt
        if let negative = try fields.string("negative_prompt") {
            guard negative.unicodeScalars.count <= limits.maxPromptLength else {
                throw .invalid("negative_prompt", "negative_prompt is longer than \(limits.maxPromptLength) characters")
            }
            s.negativePrompt = negative
        }
        if let seed = try fields.integer("seed") {
            guard seed == -1 || (0...Int64(UInt32.max)).contains(seed) else {
                throw .invalid("seed", "seed must be -1 (random) or 0...\(UInt32.max)")
            }
            s.seed = seed
        }
        for (name, maximum) in [("width", limits.maxWidth), ("height", limits.maxHeight)] {
            guard let value = try fields.integer(name) else { continue }
            guard value >= 64, value <= maximum else { throw .invalid(name, "\(name) must be 64...\(maximum)") }
            guard value % 8 == 0 else { throw .invalid(name, "\(name) must be a multiple of 8") }
            if name == "width" { s.width = Int(value) } else { s.height = Int(value) }
        }
        if let steps = try fields.integer("steps") {
            guard steps >= 1, steps <= limits.maxSteps else { throw .invalid("steps", "steps must be 1...\(limits.maxSteps)") }
            s.steps = Int(steps)
        }
        if let cfg = try fields.number("cfg_scale") {
            guard cfg >= 1, cfg <= 30 else { throw .invalid("cfg_scale", "cfg_scale must be 1...30") }
            s.cfgScale = cfg
        }
        if let sampler = try fields.string("sampler_name") {
            guard !sampler.isEmpty, sampler.unicodeScalars.count <= 64 else { throw .invalid("sampler_name", "sampler_name must be 1...64 characters") }
            s.sampler = sampler
        }
        if let batch = try fields.integer("batch_size") {
            guard batch >= 1, batch <= limits.maxBatchSize else {
                throw .invalid("batch_size", "batch_size must be 1...\(limits.maxBatchSize)")
            }
            s.batchSize = Int(batch)
        }
        if let strength = try fields.number("denoising_strength") {
            guard strength >= 0, strength <= 1 else { throw .invalid("denoising_strength", "denoising_strength must be 0...1") }
            s.denoisingStrength = strength
        }
        try parseRouting(fields, into: &s, pools: pools)
        try parseInputs(object: object, into: &s, limits: limits)
        try parseDelivery(fields, object: object, into: &s)
        return s
    }

    /// The pool and model fields. A model that is not one of a pool's fixed models must be a
    /// registered one: that is checked against the registry when the task is accepted
    /// (``APIHandler/resolveModels(_:)``), where a name no pool serves is refused.
    private static func parseRouting(_ fields: Fields, into s: inout TaskSubmission, pools: PoolConfiguration) throws(APIError) {
        s.pool = try fields.string("pool")
        s.model = try fields.string("model")
        if let name = s.pool, pools.pool(named: name) == nil { throw .unknownPool(name) }
        if let model = s.model, pools.pool(servingModel: model) == nil, let problem = ModelRecord.validateName(model) {
            throw APIError(status: 422, code: "unknown_model", message: "no pool serves model \(model) (\(problem))", field: "model")
        }
        if let digest = try fields.string("model_sha256") {
            guard s.model != nil else {
                throw APIError(status: 422, code: "model_required", message: "model_sha256 pins the digest of model, which is missing", field: "model_sha256")
            }
            if let problem = ModelRecord.validateDigest(digest) { throw .invalid("model_sha256", problem) }
            s.modelSHA256 = digest.lowercased()
        }
        try parseLoras(fields.object["loras"], into: &s)
    }

    /// `loras`: `[{"name": …, "weight": 0.8, "sha256": …}]` (weight defaults to 1).
    private static func parseLoras(_ value: JSONValue?, into s: inout TaskSubmission) throws(APIError) {
        guard let value, value != .null else { return }
        guard case .array(let items) = value else { throw .invalid("loras", "loras must be an array of {\"name\", \"weight\"}") }
        guard items.count <= maxLoras else { throw .invalid("loras", "at most \(maxLoras) LoRAs") }
        for (index, item) in items.enumerated() {
            let field = "loras[\(index)]"
            guard case .object(let spec) = item else { throw .invalid(field, "\(field) must be {\"name\", \"weight\"}") }
            if let unknown = spec.keys.filter({ !["name", "weight", "sha256"].contains($0) }).sorted().first {
                throw APIError(status: 400, code: "unknown_field", message: "\(unknown) is not a LoRA field", field: "\(field).\(unknown)")
            }
            guard let name = spec["name"]?.stringValue else { throw .missing("\(field).name") }
            if let problem = ModelRecord.validateName(name) { throw .invalid("\(field).name", problem) }
            var weight = 1.0
            if let raw = spec["weight"], raw != .null {
                guard case .number(let number) = raw, number.isFinite, (-4...4).contains(number) else {
                    throw .invalid("\(field).weight", "\(field).weight must be a number in -4...4")
                }
                weight = number
            }
            var digest: String?
            if let raw = spec["sha256"], raw != .null {
                guard let text = raw.stringValue, ModelRecord.validateDigest(text) == nil else {
                    throw .invalid("\(field).sha256", "\(field).sha256 must be 64 hex digits")
                }
                digest = text.lowercased()
            }
            if s.loras.contains(where: { $0.name == name }) { throw .invalid("\(field).name", "LoRA \(name) is named twice") }
            s.loras.append(LoraChoice(name: name, weight: weight, sha256: digest))
        }
        if !s.loras.isEmpty, s.model == nil {
            throw APIError(status: 422, code: "model_required", message: "LoRAs apply to a registered checkpoint: name it in model", field: "model")
        }
    }

    private static func parseInputs(object: [String: JSONValue], into s: inout TaskSubmission, limits: RequestLimits) throws(APIError) {
        if let image = object["init_image"], image != .null {
            guard case .object(let spec) = image else {
                throw .invalid("init_image", "init_image must be {\"upload\": KEY}, {\"base64\": DATA} or {\"url\": URL}")
            }
            if let key = spec["upload"]?.stringValue, !key.isEmpty {
                let parts = key.split(separator: "/", omittingEmptySubsequences: false)
                guard key.hasPrefix("uploads/"), parts.count >= 2, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
                    throw .invalid("init_image.upload", "not an upload key")
                }
                s.initImage = .upload(key)
            } else if let text = spec["base64"]?.stringValue {
                let payload = text.hasPrefix("data:") ? String(text.split(separator: ",", maxSplits: 1).last ?? "") : text
                guard let data = Data(base64Encoded: payload), !data.isEmpty else {
                    throw .invalid("init_image.base64", "init_image.base64 is not valid base64")
                }
                s.initImage = .inline(data)
            } else if let text = spec["url"]?.stringValue {
                guard text.utf8.count <= 2048, let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                    scheme == "http" || scheme == "https", url.host?.isEmpty == false
                else { throw .invalid("init_image.url", "init_image.url must be an http(s) URL of at most 2048 bytes") }
                s.initImage = .url(text)
            } else {
                throw .invalid("init_image", "init_image must be {\"upload\": KEY}, {\"base64\": DATA} or {\"url\": URL}")
            }
        }
        if s.kind.needsInitImage, s.initImage == nil { throw .missing("init_image") }
        // A workflow is ComfyUI's whole request, runtime_options the A1111 extras: each only with
        // its kind, so neither slips past the other's checks.
        if s.kind == .comfyuiWorkflow, let options = object["runtime_options"], options != .null {
            throw .invalid("runtime_options", "a comfyui_workflow task carries its settings in workflow, not runtime_options")
        }
        if s.kind != .comfyuiWorkflow, let workflow = object["workflow"], workflow != .null {
            throw .invalid("workflow", "workflow is only for kind comfyui_workflow; A1111 settings go in runtime_options")
        }
        if let options = object["runtime_options"], options != .null {
            guard case .object(let fields) = options else { throw .invalid("runtime_options", "runtime_options must be a JSON object") }
            if let shadowed = fields.keys.filter(shadowedByCore.contains).sorted().first {
                throw .invalid("runtime_options.\(shadowed)", "\(shadowed) is a task field; set it at the top level, where limits apply")
            }
            try WorkLimits.checkRuntimeOptions(fields, task: s, limits: limits)
            s.runtimeRequest = options.serialized()
        }
        if let workflow = object["workflow"], workflow != .null {
            guard case .object(let nodes) = workflow else { throw .invalid("workflow", "workflow must be a ComfyUI API-format object") }
            try WorkLimits.checkWorkflow(nodes, limits: limits)
            s.runtimeRequest = workflow.serialized()
        }
        if s.kind == .comfyuiWorkflow, object["workflow"] == nil || object["workflow"] == .null { throw .missing("workflow") }
    }

    private static func parseDelivery(_ fields: Fields, object: [String: JSONValue], into s: inout TaskSubmission) throws(APIError) {
        if let callback = object["callback"], callback != .null {
            guard case .object(let spec) = callback else { throw .invalid("callback", "callback must be an object") }
            guard let url = spec["url"]?.stringValue, let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
                ["http", "https"].contains(scheme), parsed.host != nil
            else { throw .invalid("callback.url", "callback.url must be an http(s) URL") }
            s.callbackURL = url
            if let secret = spec["secret"], secret != .null {
                guard let text = secret.stringValue, text.hasPrefix("whsec_"), Data(base64Encoded: String(text.dropFirst(6))) != nil else {
                    throw .invalid("callback.secret", "callback.secret must be whsec_ followed by base64")
                }
                s.callbackSecret = text
            }
            switch spec["events"] {
            case nil, .null?: break
            case .array(let events)?:
                s.callbackEvents = try events.map { event throws(APIError) in
                    guard let name = event.stringValue, WebhookEvents.known.contains(name) else {
                        throw .invalid("callback.events", "events are among \(WebhookEvents.known.joined(separator: ", "))")
                    }
                    return name
                }
            default: throw .invalid("callback.events", "callback.events must be an array of event names")
            }
        }
        if let priority = try fields.string("priority") {
            guard priority == "normal" || priority == "high" else { throw .invalid("priority", "priority must be normal or high") }
            s.highPriority = priority == "high"
        }
        if let deadline = try fields.number("deadline_seconds") {
            guard deadline > 0, deadline <= 7 * 24 * 3600 else { throw .invalid("deadline_seconds", "deadline_seconds must be in (0, 604800]") }
            s.deadlineSeconds = deadline
        }
        if let context = object["context"], context != .null {
            let text = String(decoding: context.serialized(), as: UTF8.self)
            guard text.utf8.count <= 16 * 1024 else { throw .invalid("context", "context is larger than 16 KiB") }
            s.context = text
        }
    }
}

/// Typed access to the fields of a JSON object, with errors naming the field.
struct Fields {
    let object: [String: JSONValue]

    /// The JSON object a request body holds; `invalid_json` when it holds something else.
    static func object(_ body: Data) throws(APIError) -> [String: JSONValue] {
        guard !body.isEmpty else { throw APIError(status: 400, code: "invalid_json", message: "the request body is empty") }
        let json: JSONValue
        do { json = try JSONValue.parse(body) } catch {
            throw APIError.unparsable(error)
        }
        guard case .object(let object) = json else {
            throw APIError(status: 400, code: "invalid_json", message: "the request body must be a JSON object")
        }
        return object
    }

    func string(_ name: String) throws(APIError) -> String? {
        switch object[name] {
        case nil, .null?: return nil
        case .string(let value)?: return value
        case let other?: throw .invalid(name, "\(name) must be a string, not \(other.typeName)")
        }
    }

    func number(_ name: String) throws(APIError) -> Double? {
        switch object[name] {
        case nil, .null?: return nil
        case .number(let value)?:
            guard value.isFinite else { throw .invalid(name, "\(name) must be a finite number") }
            return value
        case let other?: throw .invalid(name, "\(name) must be a number, not \(other.typeName)")
        }
    }

    func integer(_ name: String) throws(APIError) -> Int64? {
        guard let value = try number(name) else { return nil }
        guard value.rounded() == value, abs(value) < 9.0e15 else { throw .invalid(name, "\(name) must be an integer") }
        return Int64(value)
    }
}
