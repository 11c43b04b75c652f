import Foundation
import ResultWriter
import SDQPlatform
import SDQStack

@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "result-writer") { context, configuration, logger in
            [
                ResultWriter(
                    context: context, logger: logger,
                    webhookPolicy: OutboundURLPolicy(allowPrivate: configuration.webhookAllowPrivate),
                    publicBaseURL: configuration.publicURL)
            ]
        }
    }
}
