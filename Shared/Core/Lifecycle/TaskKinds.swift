import SDQMessages

/// What a task asks the runtime to do (the request's `kind`).
public enum TaskKind: String, Sendable, Codable, CaseIterable, Hashable {
    case txt2img
    case img2img
    /// A1111's extras (upscaling and face restoration of one image).
    case extras
    /// A ComfyUI workflow in API format.
    case comfyuiWorkflow = "comfyui_workflow"

    /// The message's kind.
    public var message: Sdq_V1_TaskKind {
        switch self {
        case .txt2img: .txt2Img
        case .img2img: .img2Img
        case .extras: .extras
        case .comfyuiWorkflow: .comfyuiWorkflow
        }
    }

    /// The kind a message names (an unset or unknown one is `txt2img`, as proto3's default).
    public init(message: Sdq_V1_TaskKind) {
        switch message {
        case .img2Img: self = .img2img
        case .extras: self = .extras
        case .comfyuiWorkflow: self = .comfyuiWorkflow
        default: self = .txt2img
        }
    }

    /// Whether the task needs an input image.
    public var needsInitImage: Bool { self == .img2img || self == .extras }

    /// A stored value a newer version wrote reads as `txt2img` (records only describe it).
    public init(from decoder: any Decoder) throws {
        self = TaskKind(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .txt2img
    }
}

/// A task's lane: `high` is taken before `normal` by the pool's workers.
public enum TaskPriority: String, Sendable, Codable, CaseIterable, Hashable {
    case normal
    case high

    public var message: Sdq_V1_Priority { self == .high ? .high : .normal }

    public init(message: Sdq_V1_Priority) { self = message == .high ? .high : .normal }

    public init(from decoder: any Decoder) throws {
        self = TaskPriority(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .normal
    }
}

/// The Stable Diffusion runtime a pool serves (`runtime` in the pools file, `SDQ_RUNTIME`).
public enum RuntimeKind: String, Sendable, Codable, CaseIterable, Hashable {
    /// sdq's built-in emulator (the embedded default; no GPU).
    case emulator
    /// AUTOMATIC1111 SD WebUI and its API-compatible forks (Forge, SD.Next).
    case sdwebui
    case comfyui

    public var message: Sdq_V1_RuntimeKind {
        switch self {
        case .emulator: .emulator
        case .sdwebui: .sdwebui
        case .comfyui: .comfyui
        }
    }
}
