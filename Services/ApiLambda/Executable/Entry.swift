import ApiLambda
import Dispatch
import Foundation
import Logging
import SDQAWSTransport
import SDQLambdaRuntime
import SDQPlatform
import SDQTelemetry
import ServiceLifecycle

/// `api-lambda`: the `bootstrap` of a `provided.al2023` Lambda function, and only that: it links
/// neither the embedded transport nor an HTTP server (the plain-HTTP API is the `api` executable).
/// It serves invocations through the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`) on the AWS
/// transport; a start-up failure is posted to `init/error` and the process exits 1. The
/// invocation loop and the OTLP exporters run in one service group.
@main
struct Entry {
    /// A synchronous entry point: an `async` main drains its queue with `dispatch_main`, which
    /// ends the main thread with `pthread_exit` — a forced unwind that reads about a megabyte of
    /// the binary's unwind tables at every cold start. Here the main thread waits instead while
    /// the function runs as a task on the cooperative pool.
    static func main() {
        let finished = DispatchSemaphore(value: 0)
        // Detached: a task started from `main` would inherit the main actor, whose thread waits.
        Task.detached {
            await run()
            finished.signal()
        }
        finished.wait()
    }

    static func run() async {
        let environment = ProcessInfo.processInfo.environment
        guard let runtimeAPI = environment["AWS_LAMBDA_RUNTIME_API"], !runtimeAPI.isEmpty else {
            FileHandle.standardError.write(Data(
                "api-lambda: AWS_LAMBDA_RUNTIME_API is not set: this is the Lambda function's bootstrap; run `api` to serve the API over plain HTTP\n".utf8))
            exit(78)
        }
        let client = HTTPLambdaRuntimeClient(endpoint: runtimeAPI)
        let handler: APIHandler
        let logger: Logger
        do {
            let configuration = try SDQConfiguration.fromEnvironment()
            LoggingSetup.bootstrap(level: configuration.logLevel, format: configuration.logFormat ?? "json", service: "api-lambda")
            logger = Logger(label: "api-lambda")
            SettingsCheck.warnAboutUnknownVariables(logger: logger)
            let context = try StackContext.openAWS(configuration, logger: logger)
            handler = try await APIHandler.configured(context: context, configuration: configuration, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("api-lambda: start-up failed: \(error)\n".utf8))
            await client.reportInitializationFailure(error)
            exit(1)
        }
        // OTLP export beside the invocation loop (to the collector extension/sidecar); spans leave
        // on the batch schedule, so a frozen environment sends them on a later invocation.
        let export = Telemetry.start(services: ["api"], metricsService: "api-lambda", logger: logger)
        // SDQ_LAMBDA_RESPONSE_STREAMING=true: the function sits behind a streaming front door (its URL
        // in RESPONSE_STREAM mode, a REST route in STREAM mode) and posts its answers as they go.
        let streaming = ["1", "true", "yes"].contains((environment["SDQ_LAMBDA_RESPONSE_STREAMING"] ?? "").lowercased())
        let loop = LambdaRuntimeService(
            runtime: LambdaRuntime(
                client: client, handler: APILambdaHandler(api: handler), logger: logger, responseMode: streaming ? .streaming : .buffered))
        let group = ServiceGroup(
            configuration: .init(
                services: ((export?.services ?? []) + [loop]).map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("api-lambda stopped", metadata: ["error": "\(error)"])
            exit(1)
        }
    }
}
