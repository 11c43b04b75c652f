import Foundation
import InferenceService
import SDQPlatform
import SDQStack

/// `inference-service`: the GPU worker of one pool (`SDQ_POOL`). The pool's `runtime` and
/// `runtime_url` decide what it drives (``RuntimeSelection``: `SDQ_RUNTIME`/`SDQ_RUNTIME_URL` build
/// the default pool without a pools file and may only agree with one). The emulator's per-step
/// delay is `SDQ_EMULATOR_STEP_MS` (default 50).
@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "inference-service") { context, configuration, logger in
            guard let pool = context.pools.pool(named: configuration.pool) else {
                throw ConfigurationError(message: "no pool \(configuration.pool) in the pool configuration", field: "SDQ_POOL")
            }
            let selection = try RuntimeSelection.resolve(pool: pool, configuration: configuration, isTarget: true)
            let stepMilliseconds = configuration.emulatorStepMilliseconds
            let runtime = makeRuntimeBackend(
                for: selection, emulatorStepDelay: .milliseconds(max(0, stepMilliseconds)), queueAhead: configuration.runtimeQueueAhead,
                modelDirectory: configuration.effectiveModelDirectory)
            logger.info("runtime selected", metadata: [
                "pool": "\(pool.name)", "runtime": "\(selection.runtime)", "runtime_url": "\(selection.url ?? "")",
            ])
            let settings = InferenceConfiguration(
                pool: configuration.pool, visibilityTimeout: context.pools.queues.workerVisibilityTimeout,
                fetchPolicy: OutboundURLPolicy(allowPrivate: configuration.fetchAllowPrivate),
                previewInterval: configuration.previewInterval,
                modelDirectory: configuration.effectiveModelDirectory.map { URL(fileURLWithPath: $0) })
            return [InferenceWorker(context: context, runtime: runtime, configuration: settings, logger: logger)]
        }
    }
}
