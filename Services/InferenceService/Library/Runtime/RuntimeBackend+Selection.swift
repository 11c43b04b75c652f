import Foundation
import SDQPlatform

/// The backend that drives a ``RuntimeSelection``: the one place a runtime name becomes a client
/// (`inference-service` and the in-process stack of `sdq up`/`generate` both use it).
/// `queueAhead` false (`SDQ_RUNTIME_QUEUE_AHEAD=0`): the runtime gets one job at a time.
/// `modelDirectory`: the model folder the in-process emulator loads registered checkpoints from.
public func makeRuntimeBackend(
    for selection: RuntimeSelection, emulatorStepDelay: Duration, queueAhead: Bool = true, modelDirectory: String? = nil
) -> any RuntimeBackend {
    switch (selection.runtime, selection.url) {
    case ("sdwebui", let url?): SDWebUIBackend(baseURL: url, prequeue: queueAhead)
    case ("comfyui", let url?):
        {
            var backend = ComfyUIBackend(baseURL: url)
            backend.prequeue = queueAhead
            return backend
        }()
    default:
        EmulatorRuntime(
            stepDelay: emulatorStepDelay, models: modelDirectory.map { EmulatorModels(directory: URL(fileURLWithPath: $0)) })
    }
}
