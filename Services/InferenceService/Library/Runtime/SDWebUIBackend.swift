import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SDQPlatform
import Synchronization

/// Drives an AUTOMATIC1111 SD WebUI API (also Forge and SD.Next) over HTTP on localhost:
/// `POST /sdapi/v1/txt2img`, `/img2img` or `/extra-single-image`, while polling
/// `GET /sdapi/v1/progress` for progress.
///
/// - Readiness: no task is taken before `GET /sdapi/v1/options` answers (``waitUntilReady()``).
/// - Models: before a generation whose model is not the loaded one, the checkpoint is switched
///   with `POST /sdapi/v1/options` and the switch time is logged (`model_switch_ms`); the request
///   also carries `override_settings.sd_model_checkpoint`. The worker owns its runtime, so the
///   loaded checkpoint is remembered (``LoadedCheckpoint``) rather than asked for before every
///   generation: it is read from the runtime at the first task, after a switch (to verify it) and
///   after any failed generation. Were the runtime's model changed behind sdq's back, the
///   request's `override_settings` still makes it generate with the right one.
/// - The next job waits in the runtime's own queue: the runtime serves one generation at a time
///   (A1111's `queue_lock`), so while one runs the worker already sends the next
///   (``queueAhead`` 1) and it starts the moment the current one ends. Each request carries a
///   `force_task_id`, and progress is asked for that task (`POST /internal/progress`), so a job
///   still waiting never reads the running one's progress. A waiting job that is cancelled is
///   interrupted as it starts (A1111 cannot take a request out of its queue; `/internal/progress`
///   says when it is `active`), never while the one before it runs. A runtime without
///   `/internal/progress` gets one job at a time and `GET /sdapi/v1/progress`.
/// - Timing: ``RuntimeWindow`` starts when the request is sent — for a request that waited
///   behind another, when that one's answer arrived — and ends when the answer has arrived.
/// - Errors: 400/404/422 answers are the request's fault (not retried); a CUDA out-of-memory
///   error is not retried either (the same request would fail again); 5xx, 429 and an unreachable
///   runtime are retried.
public struct SDWebUIBackend: RuntimeBackend {
    public let name = "sdwebui"
    /// Base URL, e.g. `http://127.0.0.1:7860`.
    public let baseURL: String
    public let client: HTTPClient
    /// How often progress is polled while a job runs.
    public var progressInterval: Duration
    /// Least time between two asks for a live preview, for a job that wants them
    /// (``RuntimeJob/wantsPreviews``): A1111 decodes the preview when asked, on the GPU.
    public var previewInterval: Duration = .seconds(1)
    /// Longest a single generation may take.
    public var requestTimeout: TimeAmount
    public var logger: Logger
    /// The checkpoint this backend last saw loaded (shared by copies of the backend).
    public let loaded = LoadedCheckpoint()
    /// Requests at the runtime and what it supports (shared by copies of the backend).
    let session = SDWebUISession()
    /// Whether jobs may wait in the runtime's queue (when it has `/internal/progress`).
    public var prequeue: Bool

    /// One job waits in the runtime's own queue while another runs, when the runtime reports
    /// progress per task; none otherwise.
    public var queueAhead: Int { prequeue && session.tracksTasks ? 1 : 0 }

    public init(
        baseURL: String, client: HTTPClient = .shared, progressInterval: Duration = .milliseconds(500),
        requestTimeout: TimeAmount = .minutes(30), logger: Logger = Logger(label: "sdq.sdwebui"), prequeue: Bool = true
    ) {
        self.prequeue = prequeue
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.client = client
        self.progressInterval = progressInterval
        self.requestTimeout = requestTimeout
        self.logger = logger
    }

    /// Polls `GET /sdapi/v1/options` until it answers 200 (or the task is cancelled), then asks
    /// whether the runtime reports progress per task (`POST /internal/progress`).
    public func waitUntilReady() async {
        var attempt = 0
        while !Task.isCancelled {
            if await loadedModel() != nil {
                session.tracksTasks = await taskProgress("sdq-probe") != nil
                return
            }
            attempt += 1
            if attempt == 1 || attempt % 30 == 0 {
                logger.info("waiting for the runtime to answer /sdapi/v1/options", metadata: ["url": "\(baseURL)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// The checkpoint the runtime has loaded (`sd_model_checkpoint`), nil when it does not answer.
    func loadedModel() async -> String? {
        var request = HTTPClientRequest(url: baseURL + "/sdapi/v1/options")
        request.method = .GET
        // Short: an unreachable runtime makes the client retry the connection until this passes.
        guard let response = try? await client.execute(request, timeout: .seconds(3)), response.status == .ok,
            let buffer = try? await response.body.collect(upTo: 8 << 20),
            let options = try? JSONValue.parse(Data(buffer.readableBytesView))
        else { return nil }
        return options["sd_model_checkpoint"]?.stringValue ?? ""
    }

    /// Loads `model` unless it is loaded (A1111 titles carry a hash suffix: `name.safetensors [abc]`).
    func ensureModel(_ model: String) async throws(RuntimeError) {
        guard !model.isEmpty, model != PoolConfiguration.runtimeDefaultModel else { return }
        if let known = self.loaded.value, Self.matches(known, model) { return }  // no round trip
        guard let loaded = await loadedModel() else { return }
        self.loaded.value = loaded
        if Self.matches(loaded, model) { return }
        let started = ContinuousClock.now
        let body = JSONValue.object(["sd_model_checkpoint": .string(model)]).serialized()
        self.loaded.value = nil
        let answer = await post(path: "/sdapi/v1/options", body: body)
        let elapsed = started.duration(to: .now)
        // What is loaded now decides, not the answer: a checkpoint that does not load leaves
        // A1111 on the old one (with an error, or with a 200 and a log line). That fails this
        // task for good; the next one starts from what is loaded.
        guard let now = await loadedModel() else {
            if case .failure(let error)? = answer { throw error }
            throw RuntimeError(code: "runtime_unavailable", message: "the runtime stopped answering while it switched to \(model)", retryable: true)
        }
        self.loaded.value = now
        guard Self.matches(now, model) else {
            var why = ""
            if case .failure(let error)? = answer { why = ": \(error.message)" }
            throw RuntimeError(
                code: "model_load_failed", message: "the runtime did not load \(model) (it has \(now.isEmpty ? "none" : now) loaded)\(why)",
                retryable: false)
        }
        logger.info("switched model", metadata: [
            "from": "\(loaded)", "to": "\(model)",
            "model_switch_ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
        ])
    }

    /// `POST /sdapi/v1/refresh-checkpoints` and `/refresh-loras` (and `/refresh-vae`) for the
    /// folders that changed: A1111 lists its model folders at start and on these calls only.
    public func refreshModels(_ kinds: Set<ModelRecord.Kind>) async throws(RuntimeError) {
        let paths: [(ModelRecord.Kind, String)] = [
            (.checkpoint, "/sdapi/v1/refresh-checkpoints"), (.lora, "/sdapi/v1/refresh-loras"), (.vae, "/sdapi/v1/refresh-vae"),
            (.embedding, "/sdapi/v1/refresh-embeddings"),
        ]
        for (kind, path) in paths where kinds.contains(kind) {
            _ = try await post(path: path, body: Data("{}".utf8))?.get()
        }
    }

    /// Whether the runtime's checkpoint title `loaded` is `model` (A1111 titles carry the file
    /// extension and a hash suffix: `name.safetensors [abc]`).
    static func matches(_ loaded: String, _ model: String) -> Bool {
        loaded == model || loaded.hasPrefix(model + ".") || loaded.hasPrefix(model + " ")
    }

    /// The SD WebUI request body for `job`: `runtime_options` first, then sdq's validated
    /// parameters on top (the API refuses options that shadow them; this keeps the rule here too).
    public static func requestBody(for job: RuntimeJob) -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        if let options = job.runtimeOptions, case .object(let extra)? = try? JSONValue.parse(options) {
            for (key, value) in extra { body[key] = value }
        }
        // Registered LoRAs in A1111's prompt syntax, after the client's prompt.
        let prompt = ([job.prompt] + job.loras.map { "<lora:\($0.stem):\($0.weightText)>" }).joined(separator: " ")
        var core: [String: JSONValue] = [
            "prompt": .string(prompt),
            "negative_prompt": .string(job.negativePrompt),
            "seed": .number(Double(job.seed)),
            "width": .number(Double(job.width)),
            "height": .number(Double(job.height)),
            "steps": .number(Double(job.steps)),
            "cfg_scale": .number(job.cfgScale),
            "sampler_name": .string(job.sampler),
            "batch_size": .number(Double(job.batchSize)),
            "n_iter": .number(1),
            "send_images": .bool(true),
            "save_images": .bool(false),
        ]
        // `runtime-default` (a pool built from SDQ_RUNTIME alone): keep the loaded checkpoint.
        if job.model != PoolConfiguration.runtimeDefaultModel {
            core["override_settings"] = .object(["sd_model_checkpoint": .string(job.model)])
            core["override_settings_restore_afterwards"] = .bool(false)
        }
        for (key, value) in core { body[key] = value }
        if job.kind == .img2img {
            body["init_images"] = .array(job.initImages.map { .string($0.base64EncodedString()) })
            body["denoising_strength"] = .number(job.denoisingStrength)
        }
        return body
    }

    /// The `extra-single-image` body: `runtime_options` (upscaler settings) and the image.
    public static func extrasBody(for job: RuntimeJob) -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        if let options = job.runtimeOptions, case .object(let extra)? = try? JSONValue.parse(options) {
            for (key, value) in extra { body[key] = value }
        }
        body["image"] = .string(job.initImages.first?.base64EncodedString() ?? "")
        return body
    }

    public func run(_ job: RuntimeJob, window: RuntimeWindow, progress: @escaping @Sendable (Double) async -> Bool)
        async throws(RuntimeError) -> [RuntimeImage]
    {
        let path: String
        var body: [String: JSONValue]
        switch job.kind {
        case .txt2img, .img2img:
            try await ensureModel(job.model)
            path = "/sdapi/v1/\(job.kind.rawValue)"
            body = Self.requestBody(for: job)
        case .extras:
            guard !job.initImages.isEmpty else {
                throw RuntimeError(code: "invalid_request", message: "extras needs an input image", retryable: false)
            }
            path = "/sdapi/v1/extra-single-image"
            body = Self.extrasBody(for: job)
        default:
            throw RuntimeError(code: "unsupported_kind", message: "sdwebui runs txt2img, img2img and extras, not \(job.kind)", retryable: false)
        }
        let tracked = session.tracksTasks && job.kind != .extras
        let runtimeTask = "sdq-\(job.taskID.isEmpty ? "job" : job.taskID)-\(session.nextSerial())"
        if tracked { body["force_task_id"] = .string(runtimeTask) }
        let encoded = JSONValue.object(body).serialized()
        let stopped = StopFlag()
        let ticket = session.enter()
        let sentAt = EpochClock.nowMillis()
        // The next job may be sent once the runtime has this one in its queue: a request only
        // handed to the HTTP client could be overtaken by the next on another connection.
        let confirm = tracked && queueAhead > 0
        if !confirm { window.submitted(at: sentAt) }
        let result: Result<Data, RuntimeError> = await withTaskGroup(of: Result<Data, RuntimeError>?.self) { group in
            group.addTask { await self.post(path: path, body: encoded) }
            if confirm {
                group.addTask {
                    await self.untilRegistered(runtimeTask)
                    window.submitted(at: sentAt)
                    return nil
                }
            }
            group.addTask {
                await self.watch(
                    tracked ? runtimeTask : nil, ticket: ticket, previews: job.wantsPreviews ? window.previews : nil, progress: progress,
                    stopped: stopped)
            }
            var outcome: Result<Data, RuntimeError> = .failure(RuntimeError(code: "runtime_error", message: "no response", retryable: true))
            for await value in group {
                if let value {
                    outcome = value
                    group.cancelAll()
                    break
                }
            }
            return outcome
        }
        let answeredAt = EpochClock.nowMillis()
        let previousAnswer = session.leave(ticket, at: answeredAt)
        window.started(at: ticket.queued ? max(sentAt, min(previousAnswer, answeredAt)) : sentAt)
        window.finished(at: answeredAt)
        if stopped.isSet { throw RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false) }
        // After a failure the runtime may have restarted or reloaded: ask again next time.
        if case .failure = result { loaded.value = nil }
        let data = try result.get()
        if job.kind == .extras { return try Self.decodeExtras(data, job: job) }
        return try Self.decodeImages(data, job: job)
    }

    /// Reports progress every ``progressInterval`` until the generation answers (the group
    /// cancels this) or the task must stop: then it interrupts the runtime — once the job is the
    /// one running, never one before it — and returns `cancelled`. With `previews`, one poll per
    /// ``previewInterval`` also asks for the live preview (`live_preview` of
    /// `/internal/progress`, only one newer than the last seen; else `current_image` of
    /// `/sdapi/v1/progress`).
    private func watch(
        _ runtimeTask: String?, ticket: SDWebUISession.Ticket, previews: PreviewSlot?,
        progress: @escaping @Sendable (Double) async -> Bool, stopped: StopFlag
    ) async -> Result<Data, RuntimeError>? {
        var last = 0.0
        var lastPreviewAsk: ContinuousClock.Instant?
        var previewID = -1
        while !Task.isCancelled {
            try? await Task.sleep(for: progressInterval)
            let askPreview = previews != nil && (lastPreviewAsk.map { ContinuousClock.now - $0 >= previewInterval } ?? true)
            if let runtimeTask {
                if let state = await taskProgress(runtimeTask, livePreview: askPreview ? previewID : nil), state.active {
                    last = state.progress ?? last
                    if askPreview { lastPreviewAsk = .now }
                    if let preview = state.preview {
                        previews?.offer(preview)
                        previewID = state.previewID ?? previewID
                    }
                }
            } else if !session.isWaiting(ticket) {
                let state = await currentProgress(withImage: askPreview)
                last = state?.progress ?? last
                if askPreview { lastPreviewAsk = .now }
                if let preview = state?.preview { previews?.offer(preview) }
            }
            // The last known value is reported even when progress does not answer, so a cancel
            // or a passed deadline is noticed while the runtime hangs.
            if await progress(last) { continue }
            // Decided before interrupting: the generation may answer (with no images) first.
            stopped.set()
            await untilActive(runtimeTask, ticket: ticket)
            if Task.isCancelled { return nil }
            await interrupt()
            return .failure(RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false))
        }
        return nil
    }

    /// Returns once the runtime has registered `runtimeTask` (queued, running or done), looking
    /// every 2 ms, or when the caller is cancelled (the generation answered).
    private func untilRegistered(_ runtimeTask: String) async {
        while !Task.isCancelled {
            if let state = await taskProgress(runtimeTask), state.queued || state.active || state.completed { return }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Returns once the job is the runtime's current one, looking every 5 ms: every request sent
    /// before it answered and, with a task id, the runtime says it is `active` (or done). An
    /// interrupt sent earlier would stop the job ahead of it. Cancelling the caller (the
    /// generation answered) ends the wait too.
    private func untilActive(_ runtimeTask: String?, ticket: SDWebUISession.Ticket) async {
        while !Task.isCancelled {
            if !session.isWaiting(ticket) {
                guard let runtimeTask else { return }
                if let state = await taskProgress(runtimeTask), state.active || state.completed { return }
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Decodes an `extra-single-image` response (`{"image": base64, "html_info": …}`).
    static func decodeExtras(_ data: Data, job: RuntimeJob) throws(RuntimeError) -> [RuntimeImage] {
        guard let response = try? JSONValue.parse(data), let text = response["image"]?.stringValue, let png = Data(base64Encoded: text),
            !png.isEmpty
        else { throw RuntimeError(code: "runtime_error", message: "the runtime's extras response has no image", retryable: true) }
        let size = PNGInfo.size(of: png)
        return [RuntimeImage(png: png, width: size?.width ?? job.width, height: size?.height ?? job.height, seed: job.seed)]
    }

    /// Decodes an SD WebUI generation response into images with their seeds.
    static func decodeImages(_ data: Data, job: RuntimeJob) throws(RuntimeError) -> [RuntimeImage] {
        guard let response = try? JSONValue.parse(data), case .array(let images)? = response["images"] else {
            throw RuntimeError(code: "runtime_error", message: "the runtime's response has no images", retryable: true)
        }
        var seeds: [Int64] = []
        if let info = response["info"]?.stringValue, let parsed = try? JSONValue.parse(Data(info.utf8)),
            case .array(let all)? = parsed["all_seeds"]
        {
            seeds = all.compactMap(\.integerValue)
        }
        guard images.count >= max(1, job.batchSize) else {
            throw RuntimeError(
                code: "runtime_error", message: "the runtime returned \(images.count) of \(job.batchSize) images (interrupted?)",
                retryable: true)
        }
        var result: [RuntimeImage] = []
        // SD WebUI may append extra images (grids, control maps) after the batch; keep the batch.
        for (index, image) in images.prefix(max(1, job.batchSize)).enumerated() {
            guard let text = image.stringValue, let png = Data(base64Encoded: text) else {
                throw RuntimeError(code: "runtime_error", message: "image \(index) is not base64", retryable: false)
            }
            let seed = index < seeds.count ? seeds[index] : job.seed + Int64(index)
            let size = PNGInfo.size(of: png)
            result.append(RuntimeImage(png: png, width: size?.width ?? job.width, height: size?.height ?? job.height, seed: seed))
        }
        return result
    }

    private func post(path: String, body: Data) async -> Result<Data, RuntimeError>? {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: requestTimeout)
            let buffer = try await response.body.collect(upTo: 512 << 20)
            let data = Data(buffer.readableBytesView)
            guard response.status == .ok else {
                return .failure(Self.classify(status: Int(response.status.code), body: data))
            }
            return .success(data)
        } catch {
            return .failure(RuntimeError(code: "runtime_unavailable", message: "runtime request failed: \(error)", retryable: true))
        }
    }

    /// The error of a non-200 answer: the request's fault, out of memory, or transient.
    static func classify(status: Int, body: Data) -> RuntimeError {
        let detail = String(decoding: body.prefix(500), as: UTF8.self)
        if detail.localizedCaseInsensitiveContains("out of memory") {
            return RuntimeError(code: "out_of_memory", message: "the runtime ran out of GPU memory: \(detail)", retryable: false)
        }
        if [400, 404, 422].contains(status) {
            return RuntimeError(code: "runtime_rejected", message: "runtime refused the request (\(status)): \(detail)", retryable: false)
        }
        return RuntimeError(code: "runtime_error", message: "runtime answered \(status): \(detail)", retryable: status >= 500 || status == 429)
    }

    private func interrupt() async {
        var request = HTTPClientRequest(url: baseURL + "/sdapi/v1/interrupt")
        request.method = .POST
        _ = try? await client.execute(request, timeout: .seconds(5))
    }

    /// A1111's view of one task (`POST /internal/progress`).
    struct TaskProgress {
        var active: Bool
        var queued: Bool
        var completed: Bool
        var progress: Double?
        /// The live preview, when asked for and newer than the one named in the request.
        var preview: RuntimePreview?
        /// Its `id_live_preview`, to name in the next request.
        var previewID: Int?
    }

    /// A1111's view of one task (`POST /internal/progress`): nil when the runtime does not answer
    /// it (older runtimes, other forks). `livePreview`: ask for a preview newer than that
    /// `id_live_preview` (-1: any).
    func taskProgress(_ runtimeTask: String, livePreview: Int? = nil) async -> TaskProgress? {
        var request = HTTPClientRequest(url: baseURL + "/internal/progress")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let body = JSONValue.object([
            "id_task": .string(runtimeTask), "id_live_preview": .number(Double(livePreview ?? -1)), "live_preview": .bool(livePreview != nil),
        ])
        request.body = .bytes(ByteBuffer(bytes: body.serialized()))
        guard let response = try? await client.execute(request, timeout: .seconds(5)), response.status == .ok,
            let buffer = try? await response.body.collect(upTo: 4 << 20),
            let value = try? JSONValue.parse(Data(buffer.readableBytesView)), case .bool(let active)? = value["active"]
        else { return nil }
        return TaskProgress(
            active: active, queued: value["queued"] == .bool(true), completed: value["completed"] == .bool(true), progress: value["progress"]?.numberValue,
            preview: value["live_preview"]?.stringValue.flatMap { RuntimePreview(base64: $0) },
            previewID: value["id_live_preview"]?.numberValue.map { Int($0) })
    }

    /// `GET /sdapi/v1/progress`: the progress of whatever runs, and with `withImage` its
    /// `current_image` (base64) as a preview.
    private func currentProgress(withImage: Bool) async -> (progress: Double?, preview: RuntimePreview?)? {
        var request = HTTPClientRequest(url: baseURL + "/sdapi/v1/progress?skip_current_image=\(!withImage)")
        request.method = .GET
        guard let response = try? await client.execute(request, timeout: .seconds(5)), response.status == .ok,
            let buffer = try? await response.body.collect(upTo: 4 << 20),
            let value = try? JSONValue.parse(Data(buffer.readableBytesView))
        else { return nil }
        return (value["progress"]?.numberValue, value["current_image"]?.stringValue.flatMap { RuntimePreview(base64: $0) })
    }
}

/// Reads the size from a PNG's IHDR chunk.
public enum PNGInfo {
    /// Width and height, or nil when `data` is not a PNG.
    public static func size(of data: Data) -> (width: Int, height: Int)? {
        let bytes = [UInt8](data.prefix(24))
        guard bytes.count == 24, bytes[0..<8] == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A],
            bytes[12..<16] == [0x49, 0x48, 0x44, 0x52]
        else { return nil }
        func be(_ offset: Int) -> Int { bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) } }
        return (be(16), be(20))
    }
}

/// The checkpoint an SD WebUI runtime has loaded, as its backend last saw it; nil when unknown.
public final class LoadedCheckpoint: Sendable {
    private let state = Mutex<String?>(nil)

    public init() {}

    public var value: String? {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}

/// The requests an SD WebUI backend has at its runtime, in the order sent, and whether the runtime
/// reports progress per task. Shared by copies of the backend.
final class SDWebUISession: Sendable {
    /// One request at the runtime.
    struct Ticket: Sendable {
        let serial: UInt64
        /// Whether another of this backend's requests was at the runtime when it was sent: it
        /// waits in the runtime's queue until that one is answered.
        let queued: Bool
    }
    private struct State {
        var serial: UInt64 = 0
        var outstanding: Set<UInt64> = []
        var lastAnswer: Int64 = 0
        var tracksTasks = false
    }
    private let state = Mutex(State())

    /// Whether the runtime answers `POST /internal/progress` (learnt when it became ready).
    var tracksTasks: Bool {
        get { state.withLock { $0.tracksTasks } }
        set { state.withLock { $0.tracksTasks = newValue } }
    }

    func nextSerial() -> UInt64 {
        state.withLock {
            $0.serial += 1
            return $0.serial
        }
    }

    /// A request is sent.
    func enter() -> Ticket {
        state.withLock { state in
            state.serial += 1
            let ticket = Ticket(serial: state.serial, queued: !state.outstanding.isEmpty)
            state.outstanding.insert(state.serial)
            return ticket
        }
    }

    /// Whether a request sent before `ticket` is still unanswered.
    func isWaiting(_ ticket: Ticket) -> Bool {
        state.withLock { state in state.outstanding.contains { $0 < ticket.serial } }
    }

    /// `ticket`'s answer arrived at `time`; returns when the answer before it arrived.
    func leave(_ ticket: Ticket, at time: Int64) -> Int64 {
        state.withLock { state in
            state.outstanding.remove(ticket.serial)
            defer { state.lastAnswer = max(state.lastAnswer, time) }
            return state.lastAnswer
        }
    }
}
