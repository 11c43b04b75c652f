import SDQPlatform

/// The backend that drives a ``RuntimeSelection``: the one place a runtime name becomes a client
/// (`inference-service` and the in-process stack of `sdq up`/`generate` both use it).
public func makeRuntimeBackend(for selection: RuntimeSelection, emulatorStepDelay: Duration) -> any RuntimeBackend {
    switch (selection.runtime, selection.url) {
    case ("sdwebui", let url?): SDWebUIBackend(baseURL: url)
    case ("comfyui", let url?): ComfyUIBackend(baseURL: url)
    default: EmulatorRuntime(stepDelay: emulatorStepDelay)
    }
}
