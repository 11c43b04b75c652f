import ApiLambda
import Foundation
import Logging
import SDQLambdaRuntime
import SDQPlatform

/// `api-lambda`: the `bootstrap` of a `provided.al2023` Lambda function. With
/// `AWS_LAMBDA_RUNTIME_API` set it serves invocations through the Lambda Runtime API (a start-up
/// failure is posted to `init/error` and the process exits 1); without it, it serves the same
/// handler over plain HTTP on `SDQ_HTTP_PORT`.
@main
struct Entry {
    static func main() async {
        let environment = ProcessInfo.processInfo.environment
        guard let runtimeAPI = environment["AWS_LAMBDA_RUNTIME_API"], !runtimeAPI.isEmpty else {
            await serveHTTP()
            return
        }
        let client = HTTPLambdaRuntimeClient(endpoint: runtimeAPI)
        let handler: APIHandler
        let logger: Logger
        do {
            let configuration = try SDQConfiguration.fromEnvironment()
            LoggingSetup.bootstrap(level: configuration.logLevel, format: configuration.logFormat ?? "json", service: "api-lambda")
            logger = Logger(label: "api-lambda")
            SettingsCheck.warnAboutUnknownVariables(logger: logger)
            let context = try await StackContext.open(configuration, logger: logger)
            handler = try await APIHandler.configured(context: context, configuration: configuration, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("api-lambda: start-up failed: \(error)\n".utf8))
            await client.reportInitializationFailure(error)
            exit(1)
        }
        // OTLP export beside the invocation loop (to the collector extension/sidecar); spans leave
        // on the batch schedule, so a frozen environment sends them on a later invocation.
        let export = Telemetry.start(services: ["api"], metricsService: "api-lambda", logger: logger)
        await withTaskGroup(of: Void.self) { group in
            for service in export?.services ?? [] {
                group.addTask { try? await service.run() }
            }
            group.addTask {
                do {
                    try await LambdaRuntime(client: client, handler: APILambdaHandler(api: handler), logger: logger).run()
                } catch {
                    logger.critical("the Runtime API failed", metadata: ["error": "\(error)"])
                    exit(1)
                }
            }
        }
    }

    static func serveHTTP() async {
        await ServiceRunner.run(name: "api-lambda") { context, configuration, logger in
            let handler = try await APIHandler.configured(context: context, configuration: configuration, logger: logger)
            let host = ProcessInfo.processInfo.environment["SDQ_HTTP_HOST"] ?? "0.0.0.0"
            return [APIHTTPServer(handler: handler, host: host, port: configuration.httpPort, logger: logger)]
        }
    }
}
