import Logging
import SDQLambdaRuntime
import ServiceLifecycle

/// The Lambda invocation loop as a `Service`, so `api-lambda` runs it in one `ServiceGroup` with
/// its telemetry exporters: on SIGTERM (Lambda's shutdown, with extensions registered) the loop
/// stops waiting for the next event and the exporters flush after it. A Runtime API failure ends
/// the service with the error, which ends the group; the executable then exits non-zero.
public struct LambdaRuntimeService<Client: LambdaRuntimeClient, Handler: LambdaHandler>: Service {
    public let runtime: LambdaRuntime<Client, Handler>

    public init(runtime: LambdaRuntime<Client, Handler>) { self.runtime = runtime }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            do {
                try await runtime.run()
            } catch {
                if Task.isCancelled { return }
                runtime.logger.critical("the Runtime API failed", metadata: ["error": "\(error)"])
                throw error
            }
        }
    }
}
