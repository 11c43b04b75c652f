import ApiHTTP
import ApiLambda
import SDQPlatform
import SDQStack

/// `api`: the HTTP API over plain HTTP on `SDQ_HTTP_HOST`:`SDQ_HTTP_PORT`, on either transport —
/// what compose, ECS and EKS run (the Lambda function is `api-lambda`).
@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "api") { context, configuration, logger in
            let handler = try await APIHandler.configured(context: context, configuration: configuration, logger: logger)
            return [APIHTTPServer(handler: handler, host: configuration.httpHost, port: configuration.httpPort, logger: logger)]
        }
    }
}
