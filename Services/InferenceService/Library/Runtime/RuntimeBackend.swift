import Foundation
import SDQPlatform
import Synchronization

/// One generation as a runtime sees it.
public struct RuntimeJob: Sendable, Equatable {
    /// `txt2img`, `img2img`, `extras` or `comfyui_workflow`.
    public var kind: TaskKind
    public var prompt: String
    public var negativePrompt: String
    public var seed: Int64
    public var width: Int
    public var height: Int
    public var steps: Int
    public var cfgScale: Double
    public var sampler: String
    public var batchSize: Int
    public var denoisingStrength: Double
    public var model: String
    /// Runtime-native JSON object merged into the runtime request unchanged (`runtime_options`).
    public var runtimeOptions: Data?
    /// Input images (img2img), already fetched from the object store.
    public var initImages: [Data]
    /// The task this job runs (names its files where the runtime keeps them: ComfyUI's
    /// `filename_prefix`); empty when there is none.
    public var taskID: String = ""
    /// The registered checkpoint's file name in the runtime's checkpoint folder (``model`` is
    /// then the same name); nil when ``model`` is a fixed model of the pool.
    public var checkpointFile: String?
    /// The size of ``checkpointFile`` (the emulator's load time goes by it).
    public var checkpointBytes: Int64 = 0
    /// Registered LoRAs, in order: SD WebUI gets them as prompt syntax, ComfyUI as loader nodes.
    public var loras: [LoraFile] = []
    /// Whether the backend should collect live previews into the run's
    /// ``RuntimeWindow/previews`` (asked of the runtime at most once per its preview interval).
    public var wantsPreviews = false

    public init(
        kind: TaskKind = .txt2img, prompt: String, negativePrompt: String = "", seed: Int64, width: Int, height: Int,
        steps: Int, cfgScale: Double = 7, sampler: String = "Euler a", batchSize: Int = 1,
        denoisingStrength: Double = 0.75, model: String, runtimeOptions: Data? = nil, initImages: [Data] = []
    ) {
        self.kind = kind
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.seed = seed
        self.width = width
        self.height = height
        self.steps = steps
        self.cfgScale = cfgScale
        self.sampler = sampler
        self.batchSize = batchSize
        self.denoisingStrength = denoisingStrength
        self.model = model
        self.runtimeOptions = runtimeOptions
        self.initImages = initImages
    }
}

/// A LoRA file in the runtime's LoRA folder and the strength it is applied with.
public struct LoraFile: Sendable, Equatable {
    public var fileName: String
    public var weight: Double

    public init(fileName: String, weight: Double) {
        self.fileName = fileName
        self.weight = weight
    }

    /// The name the runtime knows it by: the file name without its extension (A1111's
    /// `<lora:NAME:weight>`).
    public var stem: String {
        guard let dot = fileName.lastIndex(of: "."), dot != fileName.startIndex else { return fileName }
        return String(fileName[..<dot])
    }

    /// The weight as prompt text: `0.8`, `1`, `-0.25`.
    public var weightText: String {
        let rounded = (weight * 1000).rounded() / 1000
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}

/// One output a runtime produced: a PNG image, or another medium a ComfyUI workflow saved
/// (animated WebP or GIF, video, audio), named by its ``contentType``.
public struct RuntimeImage: Sendable, Equatable {
    /// The file's bytes (PNG unless ``contentType`` says otherwise).
    public var png: Data
    /// Pixel size; 0 for a medium without one sdq reads (video, audio).
    public var width: Int
    public var height: Int
    public var seed: Int64
    /// The checkpoint that made the image when the runtime says so (a ComfyUI workflow's
    /// `ckpt_name`); nil: the task's model.
    public var model: String?
    /// The media type, `image/png` for images.
    public var contentType: String = "image/png"

    public init(png: Data, width: Int, height: Int, seed: Int64, model: String? = nil, contentType: String = "image/png") {
        self.png = png
        self.width = width
        self.height = height
        self.seed = seed
        self.model = model
        self.contentType = contentType
    }

    /// The file extension the object is stored under (`png`, `webp`, `mp4`, …).
    public var fileExtension: String { MediaTypes.fileExtension(of: contentType) }
}

/// Media types of the files a runtime may save, by file extension.
public enum MediaTypes {
    static let byExtension: [String: String] = [
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
        "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "mkv": "video/x-matroska",
        "wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "opus": "audio/opus",
    ]

    /// The media type of a file named `name`; `application/octet-stream` for an unknown extension.
    public static func of(fileName name: String) -> String {
        let ext = name.split(separator: ".").last.map { $0.lowercased() } ?? ""
        return byExtension[ext] ?? "application/octet-stream"
    }

    /// The extension to store a file of `contentType` under (`bin` when unknown).
    public static func fileExtension(of contentType: String) -> String {
        if contentType == "image/jpeg" { return "jpg" }
        return byExtension.first { $0.value == contentType }?.key ?? "bin"
    }
}

/// A runtime failure, with whether trying again could help.
public struct RuntimeError: CodedError {
    public let code: String
    public let message: String
    /// True for transient faults (runtime unreachable, busy); false for bad requests.
    public let retryable: Bool

    public init(code: String, message: String, retryable: Bool) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }
}

/// A Stable Diffusion runtime the inference service drives: the in-process emulator, or an HTTP
/// runtime (SD WebUI and its API-compatible forks, ComfyUI) next to the service.
public protocol RuntimeBackend: Sendable {
    /// `emulator`, `sdwebui` or `comfyui`.
    var name: String { get }
    /// How many further jobs may wait in the runtime's own queue while one runs (0: none). The
    /// worker hands the runtime its next job this far ahead — once the one before it has been
    /// submitted (``RuntimeWindow/untilSubmitted()``) — so the runtime starts it the moment the
    /// current one ends, with no round trip of sdq's in between.
    var queueAhead: Int { get }
    /// Runs one job, reporting progress (0…1) as it goes and recording in `window` when the
    /// runtime took it, began and ended it. When `progress` answers false (the task was
    /// cancelled), or the calling task is cancelled, the job stops with error code `cancelled`;
    /// a job still waiting in the runtime's queue is taken out of it, or stopped as it starts.
    func run(_ job: RuntimeJob, window: RuntimeWindow, progress: @escaping @Sendable (Double) async -> Bool)
        async throws(RuntimeError) -> [RuntimeImage]
    /// Returns once the runtime can take work (an HTTP runtime loads its models first), or when
    /// the calling task is cancelled. The worker takes no task before.
    func waitUntilReady() async
    /// Tells the runtime its folders of these kinds changed (the model cache added or evicted
    /// files), so it lists them again; called only after a change.
    func refreshModels(_ kinds: Set<ModelRecord.Kind>) async throws(RuntimeError)
}

extension RuntimeBackend {
    public func waitUntilReady() async {}
    /// Runtimes that list their folders on each use (ComfyUI, the emulator) need no call.
    public func refreshModels(_ kinds: Set<ModelRecord.Kind>) async throws(RuntimeError) {}
    public var queueAhead: Int { 0 }

    /// Runs one job without keeping its window.
    public func run(_ job: RuntimeJob, progress: @escaping @Sendable (Double) async -> Bool) async throws(RuntimeError)
        -> [RuntimeImage]
    {
        try await run(job, window: RuntimeWindow(), progress: progress)
    }
}

/// When a job was at the runtime, in epoch milliseconds, as the backend sees it at the runtime's
/// boundary: `submitted` when the runtime has the job (request sent, prompt queued), `started`
/// when the runtime began it, `finished` when its answer (or completion message) arrived. The
/// worker waits on ``untilSubmitted()`` before it hands the runtime the next job, so jobs reach
/// the runtime in order.
public final class RuntimeWindow: Sendable {
    private struct State {
        var submitted: Int64?
        var started: Int64?
        var finished: Int64?
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var onClose: (@Sendable () -> Void)?
        var onSubmit: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())
    /// The run's live previews, when the job asked for them (``RuntimeJob/wantsPreviews``).
    public let previews = PreviewSlot()

    public init() {}

    public var submittedAt: Int64? { state.withLock { $0.submitted } }
    public var startedAt: Int64? { state.withLock { $0.started } }
    public var finishedAt: Int64? { state.withLock { $0.finished } }

    /// The runtime has the job (its request is on the way or queued there).
    public func submitted(at time: Int64 = EpochClock.nowMillis()) {
        let (waiters, action) = state.withLock { state -> ([CheckedContinuation<Void, Never>], (@Sendable () -> Void)?) in
            if state.submitted == nil { state.submitted = time }
            defer {
                state.waiters = []
                state.onSubmit = nil
            }
            return (state.waiters, state.onSubmit)
        }
        for waiter in waiters { waiter.resume() }
        action?()
    }

    /// The runtime began the job (the first time given counts).
    public func started(at time: Int64) {
        state.withLock { if $0.started == nil { $0.started = time } }
    }

    /// The runtime's answer arrived (the first time given counts).
    public func finished(at time: Int64) {
        state.withLock { if $0.finished == nil { $0.finished = time } }
    }

    /// The run ended, submitted or not: wakes ``untilSubmitted()`` and, the first time, runs the
    /// ``whenClosed(_:)`` action.
    public func close() {
        let (waiters, actions) = state.withLock { state -> ([CheckedContinuation<Void, Never>], [@Sendable () -> Void]) in
            let actions = state.closed ? [] : [state.onSubmit, state.onClose].compactMap { $0 }
            state.closed = true
            state.onClose = nil
            state.onSubmit = nil
            defer { state.waiters = [] }
            return (state.waiters, actions)
        }
        for waiter in waiters { waiter.resume() }
        for action in actions { action() }
    }

    /// Runs `action` once, when the job is submitted or its run ends, whichever comes first (at
    /// once if one has): the runtime may be handed the next job.
    public func whenSubmitted(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.submitted != nil || state.closed { return true }
            state.onSubmit = action
            return false
        }
        if now { action() }
    }

    /// Runs `action` once, when the run ends (at once if it has): the runtime is free of the job
    /// then, even while the worker still records the task's outcome.
    public func whenClosed(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.closed { return true }
            state.onClose = action
            return false
        }
        if now { action() }
    }

    /// Returns once the job was submitted or its run ended.
    public func untilSubmitted() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.submitted != nil || state.closed { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

extension RuntimeJob {
    /// The emulator parameters of image `index` of the batch (A1111 increments the seed per image).
    package func emulatorParameters(index: Int) -> EmulatorImage.Parameters {
        EmulatorImage.Parameters(
            prompt: prompt, negativePrompt: negativePrompt, model: model, seed: seed + Int64(index), width: width,
            height: height, steps: steps, cfgScale: cfgScale, sampler: sampler)
    }
}
