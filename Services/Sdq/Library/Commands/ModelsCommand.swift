import ArgumentParser
import Foundation
import SDQPlatform

/// `sdq models add|ls|rm`: the model registry of the stack the environment names (embedded, or
/// AWS with `SDQ_TRANSPORT=aws`). It works on the stack's store and bucket directly — a
/// checkpoint is gigabytes, far more than an API request carries — so it needs the stack's
/// credentials, as `sdq aws init` does.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "Register, list and remove models (checkpoints, LoRAs, …).",
        subcommands: [Add.self, List.self, Remove.self])

    /// Opens the registry of the configured stack.
    static func registry() async throws -> ModelRegistry {
        let (configuration, logger) = try prepareEnvironment(defaultLevel: .error)
        let context = try await StackContext.open(configuration, logger: logger)
        return ModelRegistry(tasks: context.transport.tasks, objects: context.transport.objects)
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add", abstract: "Register a model file: stored in the stack's bucket, its SHA-256 checked.")

        @Argument(help: "The name tasks use (letters, digits, '.', '_', '-').")
        var name: String

        @Option(help: "checkpoint, lora, vae, embedding or upscaler.")
        var kind: String

        @Option(help: "Base family: \(ModelRecord.knownFamilies.joined(separator: ", ")), …")
        var family: String

        @Option(help: "A file on this machine to upload.")
        var file: String?

        @Option(help: "An http(s) URL to download once into the bucket.")
        var url: String?

        @Option(help: "An object already in the stack's bucket, registered where it is.")
        var key: String?

        @Option(help: "The file's expected SHA-256 (hex); registration fails if it differs.")
        var sha256: String?

        @Flag(help: "Point an existing name at this file.")
        var replace = false

        @Flag(help: "Print the registered model as JSON.")
        var json = false

        func validate() throws {
            guard ModelRecord.Kind(rawValue: kind) != nil else {
                throw ValidationError("--kind is one of \(ModelRecord.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard [file, url, key].compactMap({ $0 }).count == 1 else { throw ValidationError("give exactly one of --file, --url, --key") }
        }

        func run() async throws {
            try await reportingFailures {
                let source: ModelRegistry.Source =
                    if let file { .file(file) } else if let url { .url(url) } else { .object(key ?? "") }
                let record = try await ModelsCommand.registry().register(
                    name: name, kind: ModelRecord.Kind(rawValue: kind) ?? .checkpoint, family: family, source: source, sha256: sha256,
                    replace: replace)
                if json { try ModelsCommand.printJSON(record) } else {
                    print("registered \(record.name): \(record.kind.rawValue), \(record.family), \(record.bytes) bytes, sha256 \(record.sha256)")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the registered models.")

        @Flag(help: "Print the models as JSON.")
        var json = false

        func run() async throws {
            try await reportingFailures {
                let models = try await ModelsCommand.registry().list()
                if json { return try ModelsCommand.printJSON(models) }
                if models.isEmpty { return print("no models registered (sdq models add NAME --kind … --family … --file …)") }
                print("NAME".padding(toLength: 32, withPad: " ", startingAt: 0) + "KIND        FAMILY  " + "SIZE".padding(toLength: 12, withPad: " ", startingAt: 0) + "SHA256")
                for model in models {
                    print(
                        model.name.padding(toLength: max(32, model.name.count + 1), withPad: " ", startingAt: 0)
                            + model.kind.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                            + model.family.padding(toLength: 8, withPad: " ", startingAt: 0)
                            + ByteCountFormatter.string(fromByteCount: model.bytes, countStyle: .binary)
                            .padding(toLength: 12, withPad: " ", startingAt: 0) + String(model.sha256.prefix(16)))
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove a model's registration (and its file, if no other name uses it).")

        @Argument(help: "The model's name.")
        var name: String

        func run() async throws {
            try await reportingFailures {
                let record = try await ModelsCommand.registry().remove(name: name)
                print("removed \(record.name)")
            }
        }
    }
}
