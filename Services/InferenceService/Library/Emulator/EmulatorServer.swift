import Foundation
import Hummingbird
import Logging
import NIOCore
import SDQPlatform
import ServiceLifecycle

/// An HTTP server that speaks the subset of the AUTOMATIC1111 SD WebUI API the inference service
/// uses, backed by ``EmulatorRuntime`` (`sdq emulate-runtime`). Like the real WebUI it runs one
/// generation at a time; others queue behind it.
///
/// Routes: `POST /sdapi/v1/txt2img`, `POST /sdapi/v1/img2img`, `GET /sdapi/v1/progress`,
/// `POST /sdapi/v1/interrupt`, `GET /sdapi/v1/sd-models`, `GET|POST /sdapi/v1/options`,
/// `GET /internal/ping`.
public struct EmulatorServer: Service {
    public var host: String
    public var port: Int
    public var stepDelay: Duration
    public var models: [String]
    public var logger: Logger
    /// Called with the bound port once the server listens (useful with port 0).
    public var onListening: @Sendable (Int) async -> Void

    public init(
        host: String = "127.0.0.1", port: Int = 7860, stepDelay: Duration = .milliseconds(10),
        models: [String] = [PoolConfiguration.emulatorModel], logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
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
        let models = self.models
        let runtime = EmulatorRuntime(stepDelay: stepDelay)
        let gpu = AsyncSemaphore(value: 1)

        router.get("/internal/ping") { _, _ in Self.json(.object([:])) }
        router.get("/sdapi/v1/sd-models") { _, _ in
            Self.json(.array(models.map { name in
                .object(["title": .string(name), "model_name": .string(name), "filename": .string("\(name).safetensors"),
                         "hash": .null, "sha256": .null, "config": .null])
            }))
        }
        router.get("/sdapi/v1/options") { _, _ in
            Self.json(.object(["sd_model_checkpoint": .string(await state.model)]))
        }
        router.post("/sdapi/v1/options") { request, _ in
            var request = request
            let body = try? JSONValue.parse(Data((try await request.collectBody(upTo: 1 << 20)).readableBytesView))
            if let model = body?["sd_model_checkpoint"]?.stringValue {
                guard models.contains(model) else { return Self.detail(.badRequest, "unknown model \(model)") }
                await state.setModel(model)
            }
            return Self.json(.null)
        }
        router.get("/sdapi/v1/progress") { _, _ in
            let snapshot = await state.snapshot()
            return Self.json(.object([
                "progress": .number(snapshot.progress),
                "eta_relative": .number(0),
                "state": .object(["job_count": .number(Double(snapshot.jobCount)), "interrupted": .bool(snapshot.interrupted)]),
                "current_image": .null,
                "textinfo": .null,
            ]))
        }
        router.post("/sdapi/v1/interrupt") { _, _ in
            await state.interrupt()
            return Self.json(.null)
        }
        for kind in ["txt2img", "img2img"] {
            router.post("/sdapi/v1/\(kind)") { request, _ in
                var request = request
                let buffer = try await request.collectBody(upTo: 64 << 20)
                guard let body = try? JSONValue.parse(Data(buffer.readableBytesView)), body.objectValue != nil else {
                    return Self.detail(.unprocessableContent, "body must be a JSON object")
                }
                let job: RuntimeJob
                switch Self.job(from: body, kind: kind, defaultModel: await state.model, models: models) {
                case .success(let parsed): job = parsed
                case .failure(let failure): return Self.detail(.unprocessableContent, failure.message)
                }
                guard await gpu.wait() else { return Self.detail(.serviceUnavailable, "shutting down") }
                defer { gpu.signal() }
                await state.begin()
                do throws(RuntimeError) {
                    let images = try await runtime.run(job) { await state.progress($0) }
                    await state.end()
                    return Self.json(Self.response(for: job, images: images, request: body))
                } catch {
                    await state.end()
                    if error.code == "cancelled" {
                        // A1111 answers an interrupted job with the images it has (none here).
                        return Self.json(.object(["images": .array([]), "parameters": body, "info": .string("{}")]))
                    }
                    return Self.detail(.internalServerError, error.message)
                }
            }
        }

        let onListening = self.onListening
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "sdq-emulator"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await app.runService()
    }

    static func job(from body: JSONValue, kind: String, defaultModel: String, models: [String]) -> Result<RuntimeJob, Failure> {
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
        if kind == "img2img" {
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

    func setModel(_ model: String) { self.model = model }
    func begin() {
        running += 1
        current = 0
        interrupted = false
    }
    func end() {
        running -= 1
        current = 0
    }
    func interrupt() { interrupted = true }

    /// Records progress; false once interrupted.
    func progress(_ value: Double) -> Bool {
        current = value
        return !interrupted
    }

    func snapshot() -> (progress: Double, jobCount: Int, interrupted: Bool) { (current, running, interrupted) }
}
