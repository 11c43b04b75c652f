import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDQPlatform

/// Drives an AUTOMATIC1111 SD WebUI API (also Forge and SD.Next) over HTTP on localhost:
/// `POST /sdapi/v1/txt2img` or `/img2img`, while polling `GET /sdapi/v1/progress` for progress.
public struct SDWebUIBackend: RuntimeBackend {
    public let name = "sdwebui"
    /// Base URL, e.g. `http://127.0.0.1:7860`.
    public let baseURL: String
    public let client: HTTPClient
    /// How often progress is polled while a job runs.
    public var progressInterval: Duration
    /// Longest a single generation may take.
    public var requestTimeout: TimeAmount

    public init(
        baseURL: String, client: HTTPClient = .shared, progressInterval: Duration = .milliseconds(500),
        requestTimeout: TimeAmount = .minutes(30)
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.client = client
        self.progressInterval = progressInterval
        self.requestTimeout = requestTimeout
    }

    /// The SD WebUI request body for `job`: `runtime_options` first, then sdq's validated
    /// parameters on top (the API refuses options that shadow them; this keeps the rule here too).
    public static func requestBody(for job: RuntimeJob) -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        if let options = job.runtimeOptions, case .object(let extra)? = try? JSONValue.parse(options) {
            for (key, value) in extra { body[key] = value }
        }
        let core: [String: JSONValue] = [
            "prompt": .string(job.prompt),
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
            "override_settings": .object(["sd_model_checkpoint": .string(job.model)]),
            "override_settings_restore_afterwards": .bool(false),
        ]
        for (key, value) in core { body[key] = value }
        if job.kind == "img2img" {
            body["init_images"] = .array(job.initImages.map { .string($0.base64EncodedString()) })
            body["denoising_strength"] = .number(job.denoisingStrength)
        }
        return body
    }

    public func run(_ job: RuntimeJob, progress: @escaping @Sendable (Double) async -> Bool) async throws(RuntimeError)
        -> [RuntimeImage]
    {
        guard job.kind == "txt2img" || job.kind == "img2img" else {
            throw RuntimeError(code: "unsupported_kind", message: "sdwebui runs txt2img and img2img, not \(job.kind)", retryable: false)
        }
        let body = JSONValue.object(Self.requestBody(for: job)).serialized()
        let result: Result<Data, RuntimeError> = await withTaskGroup(of: Result<Data, RuntimeError>?.self) { group in
            group.addTask { await self.post(path: "/sdapi/v1/\(job.kind)", body: body) }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.progressInterval)
                    if let value = await self.currentProgress(), await !progress(value) {
                        await self.interrupt()
                        return .failure(RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false))
                    }
                }
                return nil
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
        let data = try result.get()
        return try Self.decodeImages(data, job: job)
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
        request.body = .bytes(ByteBuffer(data: body))
        do {
            let response = try await client.execute(request, timeout: requestTimeout)
            let buffer = try await response.body.collect(upTo: 512 << 20)
            let data = Data(buffer.readableBytesView)
            guard response.status == .ok else {
                let retryable = response.status.code >= 500 || response.status == .tooManyRequests
                let detail = String(decoding: data.prefix(500), as: UTF8.self)
                return .failure(RuntimeError(code: "runtime_error", message: "runtime answered \(response.status.code): \(detail)", retryable: retryable))
            }
            return .success(data)
        } catch {
            return .failure(RuntimeError(code: "runtime_unavailable", message: "runtime request failed: \(error)", retryable: true))
        }
    }

    private func interrupt() async {
        var request = HTTPClientRequest(url: baseURL + "/sdapi/v1/interrupt")
        request.method = .POST
        _ = try? await client.execute(request, timeout: .seconds(5))
    }

    private func currentProgress() async -> Double? {
        var request = HTTPClientRequest(url: baseURL + "/sdapi/v1/progress?skip_current_image=true")
        request.method = .GET
        guard let response = try? await client.execute(request, timeout: .seconds(5)), response.status == .ok,
            let buffer = try? await response.body.collect(upTo: 1 << 20),
            let value = try? JSONValue.parse(Data(buffer.readableBytesView))
        else { return nil }
        return value["progress"]?.numberValue
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
