import Foundation
import SDQPlatform

/// The in-process runtime emulator: sleeps `stepDelay` per sampling step (so load behaves like a
/// GPU), then renders deterministic PNGs with ``EmulatorImage``.
public struct EmulatorRuntime: RuntimeBackend {
    public let name = "emulator"
    /// Simulated time per sampling step.
    public var stepDelay: Duration
    /// Least time between two live previews of a job that wants them
    /// (``RuntimeJob/wantsPreviews``), the first one this long after the job began: a job
    /// shorter than that renders none.
    public var previewInterval: Duration

    /// The model folder registered models are loaded from; nil: tasks naming them fail.
    public var models: EmulatorModels?

    public init(stepDelay: Duration = .milliseconds(10), previewInterval: Duration = .seconds(1), models: EmulatorModels? = nil) {
        self.stepDelay = stepDelay
        self.previewInterval = previewInterval
        self.models = models
    }

    /// Runs in process: the window is the run itself.
    public func run(_ job: RuntimeJob, window: RuntimeWindow, progress: @escaping @Sendable (Double) async -> Bool)
        async throws(RuntimeError) -> [RuntimeImage]
    {
        let now = EpochClock.nowMillis()
        window.submitted(at: now)
        window.started(at: now)
        if job.checkpointFile != nil || !job.loras.isEmpty {
            guard let models else {
                window.finished(at: EpochClock.nowMillis())
                window.close()
                throw RuntimeError(code: "model_load_failed", message: "the emulator has no model folder (SDQ_MODEL_DIR)", retryable: false)
            }
            do { try await models.prepare(job) } catch {
                window.finished(at: EpochClock.nowMillis())
                window.close()
                throw error
            }
        }
        defer {
            window.finished(at: EpochClock.nowMillis())
            window.close()
        }
        return try await render(job, previews: job.wantsPreviews ? window.previews : nil, progress: progress)
    }

    private func render(_ job: RuntimeJob, previews: PreviewSlot?, progress: @escaping @Sendable (Double) async -> Bool)
        async throws(RuntimeError) -> [RuntimeImage]
    {
        if job.kind == .extras { return try await extras(job, progress: progress) }
        if job.kind == .comfyuiWorkflow {
            // The workflow's own size, seed, steps and prompts, rendered like txt2img.
            switch ComfyWorkflow.parse(try job.workflowNodes()) {
            case .success(let workflow): return try await render(workflow.job(model: job.model), previews: previews, progress: progress)
            case .failure(let error): throw RuntimeError(code: "workflow_invalid", message: error.message, retryable: false)
            }
        }
        guard job.kind == .txt2img || job.kind == .img2img else {
            throw RuntimeError(code: "unsupported_kind", message: "the emulator runs txt2img, img2img and extras, not \(job.kind)", retryable: false)
        }
        let steps = max(1, job.steps)
        var lastPreview = ContinuousClock.now
        for step in 1...steps {
            if stepDelay > .zero {
                do { try await Task.sleep(for: stepDelay) } catch {
                    throw RuntimeError(code: "cancelled", message: "the job was cancelled", retryable: true)
                }
            } else if Task.isCancelled {
                throw RuntimeError(code: "cancelled", message: "the job was cancelled", retryable: true)
            }
            if let previews, step < steps, ContinuousClock.now - lastPreview >= previewInterval {
                lastPreview = .now
                if let data = try? EmulatorImage.preview(job.emulatorParameters(index: 0), fraction: Double(step) / Double(steps)) {
                    previews.offer(RuntimePreview(data: data, contentType: "image/png"))
                }
            }
            guard await progress(Double(step) / Double(steps)) else {
                throw RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false)
            }
        }
        var images: [RuntimeImage] = []
        for index in 0..<max(1, job.batchSize) {
            let parameters = job.emulatorParameters(index: index)
            do {
                let png = try EmulatorImage.png(parameters)
                images.append(RuntimeImage(png: png, width: job.width, height: job.height, seed: parameters.seed))
            } catch {
                throw RuntimeError(code: "runtime_error", message: error.description, retryable: false)
            }
        }
        return images
    }

    /// Extras (upscaling): one step, then an image `upscaling_resize` (default 2) times the input's
    /// size, at most 4096 a side, rendered from a digest of the input so it is deterministic.
    func extras(_ job: RuntimeJob, progress: @escaping @Sendable (Double) async -> Bool) async throws(RuntimeError) -> [RuntimeImage] {
        guard let input = job.initImages.first, let size = PNGInfo.size(of: input) else {
            throw RuntimeError(code: "invalid_request", message: "extras needs a PNG input image", retryable: false)
        }
        var factor = 2.0
        if let options = job.runtimeOptions, let value = (try? JSONValue.parse(options))?["upscaling_resize"]?.numberValue {
            factor = value
        }
        guard factor >= 1, factor <= 8 else {
            throw RuntimeError(code: "invalid_request", message: "upscaling_resize must be 1...8", retryable: false)
        }
        if stepDelay > .zero {
            do { try await Task.sleep(for: stepDelay) } catch {
                throw RuntimeError(code: "cancelled", message: "the job was cancelled", retryable: true)
            }
        }
        guard await progress(1) else { throw RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false) }
        let width = min(4096, Int((Double(size.width) * factor).rounded())), height = min(4096, Int((Double(size.height) * factor).rounded()))
        let digest = input.reduce(into: UInt64(1469598103934665603)) { $0 = ($0 ^ UInt64($1)) &* 1099511628211 }
        let parameters = EmulatorImage.Parameters(
            prompt: "extras \(String(digest, radix: 16))", negativePrompt: "", model: job.model, seed: job.seed, width: width,
            height: height, steps: 1, cfgScale: 1, sampler: "upscale")
        do {
            return [RuntimeImage(png: try EmulatorImage.png(parameters), width: width, height: height, seed: job.seed)]
        } catch {
            throw RuntimeError(code: "runtime_error", message: error.description, retryable: false)
        }
    }
}
