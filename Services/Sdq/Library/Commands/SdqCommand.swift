import ArgumentParser
import Foundation
import Logging
import SDQPlatform
import SDQTelemetry

/// `sdq`: the command line of sdq.
public struct SdqCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sdq",
        abstract: "Asynchronous Stable Diffusion image generation on queues.",
        discussion: """
            Without --server, `generate` runs the whole pipeline in this process on the configured
            transport (embedded SQLite under SDQ_DATA_DIR by default).
            """,
        subcommands: [
            GenerateCommand.self, UpCommand.self, SubmitCommand.self, StatusCommand.self, WaitCommand.self, ListCommand.self,
            UsageCommand.self, CancelCommand.self, EmulateRuntimeCommand.self, AWSCommand.self, DoctorCommand.self, ModelsCommand.self,
        ]
    )

    public init() {}
}

/// Generation parameters shared by `generate` and `submit`.
struct GenerationOptions: ParsableArguments {
    @Argument(help: "The prompt.")
    var prompt: String

    @Option(name: .customLong("negative-prompt"), help: "The negative prompt.")
    var negativePrompt: String?

    @Option(help: "Seed; -1 or absent picks one at random (reported).")
    var seed: Int64?

    @Option(help: "Width in pixels (multiple of 8).")
    var width: Int?

    @Option(help: "Height in pixels (multiple of 8).")
    var height: Int?

    @Option(help: "Sampling steps.")
    var steps: Int?

    @Option(name: .customLong("batch-size"), help: "Images per task.")
    var batchSize: Int?

    @Option(help: "Worker pool.")
    var pool: String?

    @Option(help: "Model (checkpoint): a pool's fixed model or a registered one (sdq models ls).")
    var model: String?

    @Option(name: .customLong("lora"), help: "NAME[:WEIGHT]: a registered LoRA of the checkpoint's family (repeatable; weight 1 by default).")
    var loras: [String] = []

    /// The `POST /v1/tasks` body.
    var requestBody: JSONValue {
        var body: [String: JSONValue] = ["prompt": .string(prompt)]
        if let negativePrompt { body["negative_prompt"] = .string(negativePrompt) }
        if let seed { body["seed"] = .number(Double(seed)) }
        if let width { body["width"] = .number(Double(width)) }
        if let height { body["height"] = .number(Double(height)) }
        if let steps { body["steps"] = .number(Double(steps)) }
        if let batchSize { body["batch_size"] = .number(Double(batchSize)) }
        if let pool { body["pool"] = .string(pool) }
        if let model { body["model"] = .string(model) }
        if !loras.isEmpty {
            body["loras"] = .array(loras.map { spec in
                let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
                var lora: [String: JSONValue] = ["name": .string(parts[0])]
                // A weight that is not a number goes to the API as text, which refuses it by field.
                if parts.count == 2 { lora["weight"] = Double(parts[1]).map(JSONValue.number) ?? .string(parts[1]) }
                return .object(lora)
            })
        }
        return .object(body)
    }
}

/// Where a client command finds the API.
struct ServerOptions: ParsableArguments {
    @Option(help: "Base URL of an sdq API (default: http://127.0.0.1:$SDQ_HTTP_PORT).")
    var server: String?

    @Option(name: .customLong("api-key"), help: "API key (default: the first of SDQ_API_KEYS).")
    var apiKey: String?

    func client() throws -> SDQClient {
        let configuration = try SDQConfiguration.fromEnvironment()
        let url = server ?? configuration.server ?? "http://127.0.0.1:\(configuration.httpPort)"
        return SDQClient(baseURL: url, apiKey: apiKey ?? configuration.apiKeys.first)
    }
}

/// Reads the environment configuration and sets up logging for a command.
func prepareEnvironment(defaultLevel: Logger.Level) throws -> (SDQConfiguration, Logger) {
    let configuration = try SDQConfiguration.fromEnvironment()
    let level = ProcessInfo.processInfo.environment["LOG_LEVEL"] != nil ? configuration.logLevel : defaultLevel
    LoggingSetup.bootstrap(level: level, format: configuration.logFormat)
    var logger = Logger(label: "sdq")
    logger.logLevel = level
    SettingsCheck.warnAboutUnknownVariables(logger: logger)
    return (configuration, logger)
}

/// Writes a line to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// A failure the command reports and exits on.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    let exitCode: Int32
}
