import Foundation

/// The runtime a pool's workers drive, chosen by one rule everywhere (`sdq up`, `sdq generate`,
/// `inference-service`):
///
/// 1. The pool decides: its `runtime`, and for an HTTP runtime its `runtime_url`.
/// 2. Without a pools file, `SDQ_RUNTIME` and `SDQ_RUNTIME_URL` *are* the default pool's
///    (``PoolConfiguration/builtIn(runtime:runtimeURL:)``).
/// 3. With a pools file they apply to one pool, the *target*: the pool an `inference-service`
///    serves (`SDQ_POOL`), or the default pool of `sdq up`/`sdq generate`. There they may repeat
///    the file (`SDQ_RUNTIME` equal to the pool's runtime) or fill a gap (`SDQ_RUNTIME_URL` for a
///    pool without `runtime_url`, as a sidecar's `http://127.0.0.1:7860`), never contradict it: a
///    conflict refuses to start and names both settings.
/// 4. An HTTP runtime without a URL from either place refuses to start; nothing falls back to the
///    emulator or to a guessed address.
public struct RuntimeSelection: Sendable, Equatable {
    /// `emulator`, `sdwebui` or `comfyui`.
    public var runtime: String
    /// The HTTP runtime's base URL; nil for the emulator.
    public var url: String?

    public init(runtime: String, url: String?) {
        self.runtime = runtime
        self.url = url
    }

    /// The selection for `pool`. `isTarget` says whether `SDQ_RUNTIME`/`SDQ_RUNTIME_URL` apply to
    /// it (rule 3); without a pools file the built-in pool already carries them.
    public static func resolve(
        pool: PoolSpec, configuration: SDQConfiguration, isTarget: Bool
    ) throws(ConfigurationError) -> RuntimeSelection {
        let fromFile = configuration.poolsFile.map { !$0.isEmpty } ?? false
        let origin = fromFile ? "pool \(pool.name) in \(configuration.poolsFile ?? "")" : "pool \(pool.name)"
        var url = pool.runtimeURL
        if fromFile, isTarget {
            if let runtime = configuration.runtime, runtime != pool.runtime {
                throw ConfigurationError(
                    message: "SDQ_RUNTIME=\(runtime) conflicts with \(origin), which runs \(pool.runtime): "
                        + "unset SDQ_RUNTIME or change the pool's runtime",
                    field: "SDQ_RUNTIME")
            }
            if let envURL = configuration.runtimeURL {
                if pool.runtime == "emulator" {
                    throw ConfigurationError(
                        message: "SDQ_RUNTIME_URL=\(envURL) conflicts with \(origin), which runs the built-in emulator: "
                            + "unset SDQ_RUNTIME_URL or give the pool an HTTP runtime",
                        field: "SDQ_RUNTIME_URL")
                }
                if let fileURL = pool.runtimeURL, fileURL != envURL {
                    throw ConfigurationError(
                        message: "SDQ_RUNTIME_URL=\(envURL) conflicts with runtime_url \(fileURL) of \(origin): "
                            + "set one of them",
                        field: "SDQ_RUNTIME_URL")
                }
                url = envURL
            }
        }
        guard pool.runtime != "emulator" else { return RuntimeSelection(runtime: pool.runtime, url: nil) }
        guard let url else {
            let hint = fromFile ? "set runtime_url on the pool" + (isTarget ? " or SDQ_RUNTIME_URL" : "") : "set SDQ_RUNTIME_URL"
            throw ConfigurationError(
                message: "\(origin) runs \(pool.runtime) and has no runtime URL: \(hint)",
                field: fromFile ? "runtime_url" : "SDQ_RUNTIME_URL")
        }
        return RuntimeSelection(runtime: pool.runtime, url: url)
    }
}
