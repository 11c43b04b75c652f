import Foundation
import SDQMessages
import SDQPlatform

extension InferenceWorker {
    /// The model cache of a worker of `pool` over `directory`: the pool's runtime's folder
    /// layout and its `model_cache_gib`.
    public static func makeModelCache(at directory: URL, pool: PoolSpec?, objects: any ObjectStore) -> ModelCache {
        ModelCache(
            root: directory, folders: ModelFolders(runtime: pool?.runtimeKind ?? .emulator),
            limitBytes: pool?.modelCacheBytes ?? PoolSpec(name: "", runtime: "", models: []).modelCacheBytes, objects: objects)
    }

    /// Fetches and verifies the pool's `required_models` before the worker takes its first task,
    /// trying again every ``InferenceConfiguration/requiredModelRetry`` while any is unregistered or cannot be fetched
    /// (the heartbeat says which, and the worker stays `starting`).
    func fetchRequiredModels() async {
        guard let pool = context.pools.pool(named: configuration.pool), !pool.requiredModels.isEmpty else { return }
        while !Task.isCancelled {
            var missing: [String] = []
            var problems: [String] = []
            for name in pool.requiredModels {
                do {
                    guard let record = try await context.transport.tasks.model(named: name) else {
                        missing.append(name)
                        problems.append("\(name) is not registered")
                        continue
                    }
                    guard let modelCache else {
                        missing.append(name)
                        problems.append("no model folder (SDQ_MODEL_DIR)")
                        continue
                    }
                    let asset = Sdq_V1_ModelAsset(record: record)
                    if await modelCache.contains(asset), await modelCache.verify(asset) { continue }
                    _ = try await modelCache.ensure(asset)
                } catch {
                    missing.append(name)
                    problems.append("\(name): \(error)")
                }
            }
            if missing.isEmpty {
                if let modelCache { _ = await modelCache.takeChangedKinds() }  // the runtime has not listed anything yet
                try? await runtime.refreshModels(Set(ModelRecord.Kind.allCases))
                return
            }
            activity.waitingForModels(missing, error: "required models missing: " + problems.joined(separator: "; "))
            logger.warning("required models are not ready; taking no task", metadata: ["missing": "\(missing)", "why": "\(problems)"])
            do { try await Task.sleep(for: configuration.requiredModelRetry) } catch { return }
        }
    }

    /// The cache's state for the heartbeat.
    func describeCache(into heartbeat: inout WorkerHeartbeat) async {
        guard let modelCache else { return }
        heartbeat.cached = await modelCache.cachedCheckpoints.map(WorkerHeartbeat.digestPrefix)
        heartbeat.cacheBytes = await modelCache.usedBytes
        heartbeat.cacheLimitBytes = modelCache.limitBytes
    }
}
