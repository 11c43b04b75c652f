import InferenceService
import SDQPlatform

@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "inference-service") { context, configuration, logger in
            let runtime: any RuntimeBackend
            switch configuration.runtime {
            case "emulator":
                runtime = EmulatorRuntime(stepDelay: .milliseconds(50))
            case "sdwebui":
                runtime = SDWebUIBackend(baseURL: configuration.runtimeURL ?? "http://127.0.0.1:7860")
            default:
                throw ConfigurationError(message: "runtime \(configuration.runtime) is not supported yet", field: "SDQ_RUNTIME")
            }
            guard context.pools.pool(named: configuration.pool) != nil else {
                throw ConfigurationError(message: "no pool \(configuration.pool) in the pool configuration", field: "SDQ_POOL")
            }
            let settings = InferenceConfiguration(
                pool: configuration.pool, visibilityTimeout: context.pools.queues.workerVisibilityTimeout)
            return [InferenceWorker(context: context, runtime: runtime, configuration: settings, logger: logger)]
        }
    }
}
