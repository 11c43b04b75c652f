import Foundation
import ResultWriter
import SDQPlatform

@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "result-writer") { context, configuration, logger in
            [
                ResultWriter(
                    context: context, logger: logger,
                    webhookPolicy: OutboundURLPolicy(allowPrivate: configuration.webhookAllowPrivate),
                    publicBaseURL: ProcessInfo.processInfo.environment["SDQ_PUBLIC_URL"])
            ]
        }
    }
}
