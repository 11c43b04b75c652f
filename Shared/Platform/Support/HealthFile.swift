import Foundation
import Logging
import ServiceLifecycle

/// Liveness for containers without a port (workers, the dispatcher, the result-writer): while the
/// process's services run, the current time is written to `SDQ_HEALTH_FILE` every few seconds;
/// at shutdown the file is removed. A container health check (or a Kubernetes exec probe) calls
/// the service healthy while the file is younger than three intervals, e.g.
/// `find /tmp/sdq-health -newermt '-30 seconds' | grep -q .`.
///
/// It says the process is up and its services have not stopped; it costs no request to the
/// stores (each service's own loop logs and retries its transport errors).
public struct HealthFile: Service {
    let path: String
    let interval: Duration
    let logger: Logger

    public init(path: String, interval: Duration = .seconds(5), logger: Logger) {
        self.path = path
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        let url = URL(fileURLWithPath: path)
        defer { try? FileManager.default.removeItem(at: url) }
        var warned = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try Data("\(Int(Date().timeIntervalSince1970))\n".utf8).write(to: url, options: .atomic)
            } catch where !warned {
                warned = true
                logger.warning("cannot write the health file", metadata: ["path": "\(path)", "error": "\(error)"])
            } catch {}
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
