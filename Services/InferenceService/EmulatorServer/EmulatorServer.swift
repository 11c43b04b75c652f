import Foundation
import Hummingbird
import HummingbirdWebSocket
import InferenceService
import Logging
import NIOCore
import SDQPlatform
import ServiceLifecycle

/// An HTTP server that speaks the subset of the AUTOMATIC1111 SD WebUI API and of the ComfyUI API
/// the inference service uses, backed by ``EmulatorRuntime`` (`sdq emulate-runtime`). Like the real WebUI it runs one
/// generation at a time; others queue behind it.
///
/// Routes: `POST /sdapi/v1/txt2img`, `POST /sdapi/v1/img2img`, `POST /sdapi/v1/extra-single-image`,
/// `GET /sdapi/v1/progress`, `POST /sdapi/v1/interrupt`, `GET /sdapi/v1/sd-models`,
/// `GET|POST /sdapi/v1/options`, `POST /sdapi/v1/refresh-checkpoints|refresh-loras`,
/// `GET /internal/ping`.
///
/// With a model folder (`--model-dir`, the folder the inference service caches registered
/// models into) it behaves as A1111 does: the checkpoint files in `Stable-diffusion/` are
/// listed at start and on `refresh-checkpoints` only — a file added since is an unknown model
/// until then — and loading one that is not a safetensors file fails (500), leaving the loaded
/// checkpoint as it was.
///
/// ``EmulatorFaults`` injects what real runtimes do: failed generations, latency, hangs (until
/// interrupted), crashes, and the time a checkpoint switch takes.
public struct EmulatorServer: Service {
    public var host: String
    public var port: Int
    public var stepDelay: Duration
    public var models: [String]
    public var faults: EmulatorFaults
    /// The model folder (SD WebUI layout) whose checkpoints it lists besides ``models``.
    public var modelDirectory: URL?
    public var logger: Logger
    /// Called with the bound port once the server listens (useful with port 0).
    public var onListening: @Sendable (Int) async -> Void

    public init(
        host: String = "127.0.0.1", port: Int = 7860, stepDelay: Duration = .milliseconds(10),
        models: [String] = [PoolConfiguration.emulatorModel], faults: EmulatorFaults = EmulatorFaults(), modelDirectory: URL? = nil,
        logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.modelDirectory = modelDirectory
        self.faults = faults
        self.host = host
        self.port = port
        self.stepDelay = stepDelay
        self.models = models.isEmpty ? [PoolConfiguration.emulatorModel] : models
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let state = EmulatorState(model: models[0])
        let router = Router()
        let fixed = self.models
        let folder = modelDirectory.map { $0.appendingPathComponent(ModelFolders(runtime: .sdwebui).folder(for: .checkpoint)) }
        await state.list(folder)
        let runtime = EmulatorRuntime(stepDelay: stepDelay)
        let gpu = AsyncSemaphore(value: 1)
        let faults = self.faults
        let logger = self.logger

        router.get("/internal/ping") { _, _ in Self.json(.object([:])) }
        // What the runtime was asked, for tests that count round trips (`options_reads`).
        // The emulator's own clock: when each named generation began and ended on its "GPU".
        router.get("/internal/log") { _, _ in Self.json(.array(await state.log)) }
        router.get("/internal/stats") { _, _ in
            Self.json(.object(["options_reads": .int(await state.optionsReads), "refreshes": .int(await state.refreshes)]))
        }
        router.post("/sdapi/v1/refresh-checkpoints") { _, _ in
            await state.list(folder, refresh: true)
            return Self.json(.null)
        }
        router.post("/sdapi/v1/refresh-loras") { _, _ in
            await state.refreshedLoras()
            return Self.json(.null)
        }
        router.get("/sdapi/v1/sd-models") { _, _ in
            Self.json(.array((fixed + (await state.listed)).map { name in
                .object(["title": .string(name), "model_name": .string(name), "filename": .string("\(name).safetensors"),
                         "hash": .null, "sha256": .null, "config": .null])
            }))
        }
        router.get("/sdapi/v1/options") { _, _ in
            Self.json(.object(["sd_model_checkpoint": .string(await state.readOptions())]))
        }
        router.post("/sdapi/v1/options") { request, _ in
            var request = request
            let body = try? JSONValue.parse(Data((try await request.collectBody(upTo: 1 << 20)).readableBytesView))
            if let model = body?["sd_model_checkpoint"]?.stringValue {
                let listed = await state.listed
                guard fixed.contains(model) || listed.contains(model) else { return Self.detail(.badRequest, "unknown model \(model)") }
                if await state.model != model {
                    try? await Task.sleep(for: faults.modelSwitchDelay)
                    if let folder, listed.contains(model) {
                        do throws(RuntimeError) { _ = try EmulatorModels.validate(folder.appendingPathComponent(model), name: model) } catch {
                            return Self.detail(.internalServerError, error.message)
                        }
                    }
                }
                await state.setModel(model)
            }
            return Self.json(.null)
        }
        router.get("/sdapi/v1/progress") { request, _ in
            let snapshot = await state.snapshot()
            // As A1111: the current image (bare base64) unless `skip_current_image=true`.
            let skip = request.uri.queryParameters.get("skip_current_image") == "true"
            let image = skip ? nil : await state.previewing().flatMap(EmulatorState.render)
            return Self.json(.object([
                "progress": .number(snapshot.progress),
                "eta_relative": .number(0),
                "state": .object(["job_count": .number(Double(snapshot.jobCount)), "interrupted": .bool(snapshot.interrupted)]),
                "current_image": image.map { .string($0.data.base64EncodedString()) } ?? .null,
                "textinfo": .null,
            ]))
        }
        // A1111's per-task progress (`modules/progress.py`): the task a request named with
        // `force_task_id` is `queued` while it waits for the GPU, `active` while it runs, then
        // `completed`.
        router.post("/internal/progress") { request, _ in
            var request = request
            let buffer = try await request.collectBody(upTo: 1 << 20)
            let body = try? JSONValue.parse(Data(buffer.readableBytesView))
            let task = body?["id_task"]?.stringValue
            var answer = await state.taskProgress(task)
            // A1111's live preview: a PNG data URL when the running task has one newer than the
            // `id_live_preview` the client saw (the id is the progress in thousandths). Rendered
            // here, off the state's actor, as A1111 decodes it off the sampling thread.
            if body?["live_preview"] == .bool(true), answer["active"] == .bool(true), let task,
                let (picture, fraction) = await state.previewing(task), Int(fraction * 1000) > Int(body?["id_live_preview"]?.numberValue ?? -1),
                let image = EmulatorState.render((picture, fraction)), case .object(var fields) = answer
            {
                fields["live_preview"] = .string("data:image/png;base64," + image.data.base64EncodedString())
                fields["id_live_preview"] = .number(Double(Int(fraction * 1000)))
                answer = .object(fields)
            }
            return Self.json(answer)
        }
        router.post("/sdapi/v1/interrupt") { _, _ in
            await state.interrupt()
            return Self.json(.null)
        }
        for kind in [TaskKind.txt2img, .img2img] {
            router.post("/sdapi/v1/\(kind.rawValue)") { request, _ in
                var request = request
                let buffer = try await request.collectBody(upTo: 64 << 20)
                guard let body = try? JSONValue.parse(Data(buffer.readableBytesView)), body.objectValue != nil else {
                    return Self.detail(.unprocessableContent, "body must be a JSON object")
                }
                let job: RuntimeJob
                switch Self.job(from: body, kind: kind, defaultModel: await state.model, models: fixed + (await state.listed)) {
                case .success(let parsed): job = parsed
                case .failure(let failure): return Self.detail(.unprocessableContent, failure.message)
                }
                let task = body["force_task_id"]?.stringValue
                await state.enqueue(task)
                guard await gpu.wait() else {
                    await state.end(task)
                    return Self.detail(.serviceUnavailable, "shutting down")
                }
                defer { gpu.signal() }
                if let injected = await Self.inject(faults, state: state, logger: logger, request: body) {
                    await state.end(task)
                    return injected
                }
                if await state.model != job.model {
                    try? await Task.sleep(for: faults.modelSwitchDelay)
                    await state.setModel(job.model)
                }
                await state.begin(task, previewing: job.emulatorParameters(index: 0))
                do throws(RuntimeError) {
                    let images = try await runtime.run(job) { await state.progress($0) }
                    await state.end(task)
                    return Self.json(Self.response(for: job, images: images, request: body))
                } catch {
                    await state.end(task)
                    if error.code == "cancelled" {
                        // A1111 answers an interrupted job with the images it has (none here).
                        return Self.json(.object(["images": .array([]), "parameters": body, "info": .string("{}")]))
                    }
                    return Self.detail(.internalServerError, error.message)
                }
            }
        }

        router.post("/sdapi/v1/extra-single-image") { request, _ in
            var request = request
            let buffer = try await request.collectBody(upTo: 64 << 20)
            guard let body = try? JSONValue.parse(Data(buffer.readableBytesView)), body.objectValue != nil else {
                return Self.detail(.unprocessableContent, "body must be a JSON object")
            }
            guard let text = body["image"]?.stringValue,
                let image = Data(base64Encoded: text.split(separator: ",").last.map(String.init) ?? text), !image.isEmpty
            else { return Self.detail(.unprocessableContent, "image must be base64") }
            guard await gpu.wait() else { return Self.detail(.serviceUnavailable, "shutting down") }
            defer { gpu.signal() }
            if let injected = await Self.inject(faults, state: state, logger: logger, request: body) { return injected }
            let job = RuntimeJob(
                kind: .extras, prompt: "", seed: 0, width: 0, height: 0, steps: 1, model: await state.model, runtimeOptions: body.serialized(),
                initImages: [image])
            await state.begin()
            let answer: Response
            do throws(RuntimeError) {
                let images = try await runtime.run(job) { await state.progress($0) }
                answer = Self.json(.object(["image": .string(images.first?.png.base64EncodedString() ?? ""), "html_info": .string("")]))
            } catch {
                answer = Self.detail(error.code == "invalid_request" ? .unprocessableContent : .internalServerError, error.message)
            }
            await state.end()
            return answer
        }

        let comfy = ComfyState()
        Self.addComfyRoutes(to: router, state: comfy, faults: faults, models: fixed)

        let onListening = self.onListening
        let app = Application(
            router: router,
            server: .http1WebSocketUpgrade(
                webSocketRouter: Self.comfyWebSocketRouter(state: comfy),
                // Preview frames are larger than the default 16 KiB frame (aiohttp sends them whole).
                configuration: .init(ws: .init(maxFrameSize: 1 << 22))),
            configuration: .init(address: .hostname(host, port: port), serverName: "sdq-emulator"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        let defaultModel = models[0]
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    await Self.executeComfyPrompts(comfy, runtime: runtime, gpu: gpu, defaultModel: defaultModel)
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Applies the injected faults to one generation request; a response when one fires.
    static func inject(_ faults: EmulatorFaults, state: EmulatorState, logger: Logger, request: JSONValue) async -> Response? {
        if faults.latency > .zero { try? await Task.sleep(for: faults.latency) }
        if faults.crashRate > 0, Double.random(in: 0..<1) < faults.crashRate {
            logger.critical("injected crash")
            faults.crash()
        }
        if faults.errorRate > 0, Double.random(in: 0..<1) < faults.errorRate {
            return detail(.internalServerError, "injected fault")
        }
        if faults.hangRate > 0, Double.random(in: 0..<1) < faults.hangRate {
            // Hang like a stuck GPU: no progress until interrupted; then answer as A1111 does.
            await state.begin()
            while await !state.snapshot().interrupted, !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
            await state.end()
            return json(.object(["images": .array([]), "parameters": request, "info": .string("{}")]))
        }
        return nil
    }

    static func job(from body: JSONValue, kind: TaskKind, defaultModel: String, models: [String]) -> Result<RuntimeJob, Failure> {
        func int(_ key: String, _ fallback: Int) -> Int { body[key]?.integerValue.map { Int($0) } ?? fallback }
        let width = int("width", 512), height = int("height", 512), steps = int("steps", 20)
        guard (64...4096).contains(width), (64...4096).contains(height) else {
            return .failure(Failure("width and height must be 64...4096"))
        }
        guard (1...500).contains(steps) else { return .failure(Failure("steps must be 1...500")) }
        var seed = body["seed"]?.integerValue ?? -1
        if seed < 0 { seed = Int64.random(in: 0..<4_294_967_296) }
        let model = body["override_settings"]?["sd_model_checkpoint"]?.stringValue ?? defaultModel
        guard models.contains(model) else { return .failure(Failure("unknown model \(model)")) }
        var initImages: [Data] = []
        if kind == .img2img {
            guard case .array(let images)? = body["init_images"], !images.isEmpty else {
                return .failure(Failure("init_images is required"))
            }
            for image in images {
                guard let text = image.stringValue,
                    let data = Data(base64Encoded: text.split(separator: ",").last.map(String.init) ?? text)
                else { return .failure(Failure("init_images must be base64")) }
                initImages.append(data)
            }
        }
        return .success(RuntimeJob(
            kind: kind, prompt: body["prompt"]?.stringValue ?? "", negativePrompt: body["negative_prompt"]?.stringValue ?? "",
            seed: seed, width: width, height: height, steps: steps, cfgScale: body["cfg_scale"]?.numberValue ?? 7,
            sampler: body["sampler_name"]?.stringValue ?? "Euler a", batchSize: max(1, min(16, int("batch_size", 1))),
            denoisingStrength: body["denoising_strength"]?.numberValue ?? 0.75, model: model, initImages: initImages))
    }

    static func response(for job: RuntimeJob, images: [RuntimeImage], request: JSONValue) -> JSONValue {
        let seeds = images.map { JSONValue.number(Double($0.seed)) }
        let infotexts = (0..<images.count).map { JSONValue.string(job.emulatorParameters(index: $0).infotext) }
        let info = JSONValue.object([
            "prompt": .string(job.prompt), "seed": .number(Double(job.seed)), "all_seeds": .array(seeds),
            "width": .number(Double(job.width)), "height": .number(Double(job.height)),
            "sd_model_name": .string(job.model), "infotexts": .array(infotexts),
        ])
        return .object([
            "images": .array(images.map { .string($0.png.base64EncodedString()) }),
            "parameters": request,
            "info": .string(String(decoding: info.serialized(), as: UTF8.self)),
        ])
    }

    struct Failure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(data: value.serialized())))
    }

    static func detail(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(.object(["detail": .string(message)]), status: status)
    }
}

/// What the emulator server is doing, for `/sdapi/v1/progress`.
actor EmulatorState {
    private(set) var model: String
    private var current = 0.0
    private var running = 0
    private var interrupted = false

    init(model: String) { self.model = model }

    /// `GET /sdapi/v1/options` requests answered.
    private(set) var optionsReads = 0
    /// Checkpoint files of the model folder as last listed.
    private(set) var listed: [String] = []
    /// `refresh-checkpoints` and `refresh-loras` calls.
    private(set) var refreshes = 0

    /// Lists the folder's checkpoint files (at start, and on `refresh-checkpoints`).
    func list(_ folder: URL?, refresh: Bool = false) {
        if refresh { refreshes += 1 }
        guard let folder else { return }
        listed = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    func refreshedLoras() { refreshes += 1 }

    func setModel(_ model: String) { self.model = model }
    func readOptions() -> String {
        optionsReads += 1
        return model
    }
    private var pending: Set<String> = []
    private var currentTask: String?
    private var finished: [String] = []
    private var begunAt: Double = 0
    /// Each named generation as the emulator saw it: `task`, `start`, `end` (epoch ms, fractional).
    private(set) var log: [JSONValue] = []

    private static func nowMillis() -> Double { Date().timeIntervalSince1970 * 1000 }

    /// A request named `task` waits for the GPU.
    func enqueue(_ task: String?) {
        if let task { pending.insert(task) }
    }
    /// The running generation's picture, for its live previews.
    private var previewing: EmulatorImage.Parameters?

    func begin(_ task: String? = nil, previewing: EmulatorImage.Parameters? = nil) {
        running += 1
        current = 0
        interrupted = false
        self.previewing = previewing
        if let task {
            pending.remove(task)
            currentTask = task
            begunAt = Self.nowMillis()
        }
    }
    func end(_ task: String? = nil) {
        previewing = nil
        guard let task else {
            running -= 1
            current = 0
            return
        }
        if currentTask == task {
            log.append(.object([
                "task": .string(task), "start": .number(begunAt), "end": .number(Self.nowMillis()), "interrupted": .bool(interrupted),
                "progress": .number(current),
            ]))
            if log.count > 1000 { log.removeFirst(log.count - 1000) }
            running -= 1
            current = 0
            currentTask = nil
        }
        pending.remove(task)
        finished = Array((finished + [task]).suffix(16))
    }
    /// `POST /internal/progress` for `task` (without a live preview: see the route).
    func taskProgress(_ task: String?) -> JSONValue {
        let active = task != nil && task == currentTask
        return .object([
            "active": .bool(active), "queued": .bool(task.map(pending.contains) ?? false),
            "completed": .bool(task.map(finished.contains) ?? false), "progress": active ? .number(current) : .null,
            "eta": .null, "live_preview": .null, "id_live_preview": .number(-1), "textinfo": .null,
        ])
    }

    /// The running generation's picture and progress, for a preview (of `task` when named);
    /// nil when nothing (or another task) runs.
    func previewing(_ task: String? = nil) -> (EmulatorImage.Parameters, Double)? {
        guard let previewing, task == nil || task == currentTask else { return nil }
        return (previewing, current)
    }

    /// Renders a preview (as A1111 decodes its latents when a client asks).
    nonisolated static func render(_ snapshot: (EmulatorImage.Parameters, Double)) -> RuntimePreview? {
        (try? EmulatorImage.preview(snapshot.0, fraction: snapshot.1)).map { RuntimePreview(data: $0, contentType: "image/png") }
    }
    func interrupt() { interrupted = true }

    /// Records progress; false once interrupted.
    func progress(_ value: Double) -> Bool {
        current = value
        return !interrupted
    }

    func snapshot() -> (progress: Double, jobCount: Int, interrupted: Bool) { (current, running, interrupted) }
}

/// Faults ``EmulatorServer`` injects into generation requests, each drawn per request.
public struct EmulatorFaults: Sendable {
    /// Share of requests answered 500 (a transient runtime failure).
    public var errorRate: Double
    /// Delay added before every generation request.
    public var latency: Duration
    /// Share of requests that hang without progress until interrupted.
    public var hangRate: Double
    /// Share of requests on which the process exits at once (a crashed runtime).
    public var crashRate: Double
    /// Time a checkpoint switch takes.
    public var modelSwitchDelay: Duration
    /// What a crash does; exits the process (code 70) unless a test replaces it.
    public var crash: @Sendable () -> Void

    public init(
        errorRate: Double = 0, latency: Duration = .zero, hangRate: Double = 0, crashRate: Double = 0,
        modelSwitchDelay: Duration = .zero, crash: @escaping @Sendable () -> Void = { exit(70) }
    ) {
        self.errorRate = errorRate
        self.latency = latency
        self.hangRate = hangRate
        self.crashRate = crashRate
        self.modelSwitchDelay = modelSwitchDelay
        self.crash = crash
    }
}
