import SDQPlatform

/// Where each kind of model file goes under the runtime's model folder (`SDQ_MODEL_DIR`, the
/// volume the inference service shares with its runtime), by the runtime's own conventions:
/// SD WebUI (and Forge, SD.Next) `Stable-diffusion/`, `Lora/`, `VAE/`, `embeddings/`, `ESRGAN/`
/// under its `models/`; ComfyUI `checkpoints/`, `loras/`, `vae/`, `embeddings/`,
/// `upscale_models/` under its `models/`. The emulator uses ComfyUI's.
public struct ModelFolders: Sendable, Equatable {
    public let runtime: RuntimeKind

    public init(runtime: RuntimeKind) { self.runtime = runtime }

    /// The folder, relative to the model root, that holds files of `kind`.
    public func folder(for kind: ModelRecord.Kind) -> String {
        switch (runtime, kind) {
        case (.sdwebui, .checkpoint): "Stable-diffusion"
        case (.sdwebui, .lora): "Lora"
        case (.sdwebui, .vae): "VAE"
        case (.sdwebui, .embedding): "embeddings"
        case (.sdwebui, .upscaler): "ESRGAN"
        case (_, .checkpoint): "checkpoints"
        case (_, .lora): "loras"
        case (_, .vae): "vae"
        case (_, .embedding): "embeddings"
        case (_, .upscaler): "upscale_models"
        }
    }

    /// The path of a file relative to the model root.
    public func path(kind: ModelRecord.Kind, fileName: String) -> String { "\(folder(for: kind))/\(fileName)" }
}
