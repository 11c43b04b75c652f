import ApiLambda
import Foundation
import SDQPlatform

/// `api-lambda`: the Lambda `bootstrap`. Outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) it serves
/// the same handler over plain HTTP on `SDQ_HTTP_PORT`.
@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "api-lambda") { context, configuration, logger in
            if ProcessInfo.processInfo.environment["AWS_LAMBDA_RUNTIME_API"] != nil {
                throw ConfigurationError(
                    message: "the Lambda custom runtime is not in this build yet; unset AWS_LAMBDA_RUNTIME_API to serve HTTP",
                    field: "AWS_LAMBDA_RUNTIME_API")
            }
            let handler = try await APIHandler.configured(context: context, configuration: configuration, logger: logger)
            let host = ProcessInfo.processInfo.environment["SDQ_HTTP_HOST"] ?? "0.0.0.0"
            return [APIHTTPServer(handler: handler, host: host, port: configuration.httpPort, logger: logger)]
        }
    }
}
