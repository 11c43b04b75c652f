import ArgumentParser
import Foundation
import SDQPlatform

/// `sdq submit PROMPT`: submit a task to a server and print its id.
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "submit", abstract: "Submit a task and print its id.")

    @OptionGroup var generation: GenerationOptions
    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("idempotency-key"), help: "Idempotency-Key header: a repeat returns the same task.")
    var idempotencyKey: String?

    @Flag(help: "Print the accepted task document as JSON.")
    var json = false

    func run() async throws {
        try await reportingFailures {
            let document = try await server.client().submit(generation.requestBody, idempotencyKey: idempotencyKey)
            print(json ? String(decoding: try document.encoded(), as: UTF8.self) : document.id)
        }
    }
}

/// `sdq status ID`.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a task's status.")

    @Argument(help: "Task id.") var id: String
    @OptionGroup var server: ServerOptions
    @Flag(help: "Print the status document as JSON.") var json = false

    func run() async throws {
        try await reportingFailures {
            let document = try await server.client().status(id)
            if json {
                print(String(decoding: try document.encoded(pretty: true), as: UTF8.self))
            } else {
                print(describe(document))
            }
        }
    }
}

/// `sdq wait ID`: follow a task's event stream (polling where there is none) until it ends;
/// exits non-zero unless it succeeded.
struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wait", abstract: "Wait for a task to finish.")

    @Argument(help: "Task id.") var id: String
    @OptionGroup var server: ServerOptions
    @Option(help: "Seconds to wait.") var timeout: Int = 600
    @Flag(help: "Print the final status document as JSON.") var json = false

    func run() async throws {
        try await reportingFailures {
            let display = ProgressDisplay(enabled: !json)
            let document = try await server.client().follow(id, timeout: .seconds(timeout)) { display.update($0) }
            display.finish()
            print(json ? String(decoding: try document.encoded(pretty: true), as: UTF8.self) : describe(document))
            if document.status != .succeeded { throw CommandFailure(description: "task \(id) \(document.status.rawValue)", exitCode: 1) }
        }
    }
}

/// `sdq cancel ID`.
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a task, or with --purge delete an ended task's images, input, preview and manifest.")

    @Argument(help: "Task id.") var id: String
    @Flag(help: "Delete the ended task's data instead, leaving a tombstone (DELETE /v1/tasks/{id}?purge=true).") var purge = false
    @OptionGroup var server: ServerOptions

    func run() async throws {
        try await reportingFailures {
            let client = try server.client()
            let document = purge ? try await client.purge(id) : try await client.cancel(id)
            print("\(document.id) \(document.status.rawValue)" + (document.purgedAt != nil ? " purged" : ""))
        }
    }
}

func describe(_ document: TaskDocument) -> String {
    var lines = ["\(document.id)  \(document.status.rawValue)  \(Int((document.progress.isFinite ? min(1, max(0, document.progress)) : 0) * 100))%  pool \(document.pool)  model \(document.model)"]
    if let error = document.error { lines.append("error: \(error.code): \(error.message)") }
    for image in document.images { lines.append("image: \(image.url)") }
    return lines.joined(separator: "\n")
}

/// Prints a failure on standard error and exits with its code instead of a stack of text.
func reportingFailures(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as CommandFailure {
        printError("error: \(failure.description)")
        throw ExitCode(failure.exitCode)
    } catch let error as SDQClient.ClientError {
        printError("error: \(error.description)")
        throw ExitCode(error.status == 0 ? 1 : 2)
    } catch let error as any CodedError {
        printError("error: \(error.description)")
        throw ExitCode(1)
    }
}
