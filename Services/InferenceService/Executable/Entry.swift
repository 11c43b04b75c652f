import Foundation
import InferenceService
import SDQPlatform

/// `inference-service`: the GPU worker of one pool (`SDQ_POOL`) driving `SDQ_RUNTIME`
/// (`emulator`, whose per-step delay `SDQ_EMULATOR_STEP_MS` defaults to 50, or `sdwebui` at
/// `SDQ_RUNTIME_URL`).
@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "inference-service") { context, configuration, logger in
            let runtime: any RuntimeBackend
            switch configuration.runtime {
            case "emulator":
                let stepMilliseconds = ProcessInfo.processInfo.environment["SDQ_EMULATOR_STEP_MS"].flatMap(Int.init) ?? 50
                runtime = EmulatorRuntime(stepDelay: .milliseconds(max(0, stepMilliseconds)))
            case "sdwebui":
                runtime = SDWebUIBackend(baseURL: configuration.runtimeURL ?? "http://127.0.0.1:7860")
            case "comfyui":
                runtime = ComfyUIBackend(baseURL: configuration.runtimeURL ?? "http://127.0.0.1:8188")
            default:
                throw ConfigurationError(message: "runtime \(configuration.runtime) is not supported yet", field: "SDQ_RUNTIME")
            }
            guard context.pools.pool(named: configuration.pool) != nil else {
                throw ConfigurationError(message: "no pool \(configuration.pool) in the pool configuration", field: "SDQ_POOL")
            }
            let settings = InferenceConfiguration(
                pool: configuration.pool, visibilityTimeout: context.pools.queues.workerVisibilityTimeout,
                fetchPolicy: OutboundURLPolicy(allowPrivate: configuration.fetchAllowPrivate))
            return [InferenceWorker(context: context, runtime: runtime, configuration: settings, logger: logger)]
        }
    }
}
