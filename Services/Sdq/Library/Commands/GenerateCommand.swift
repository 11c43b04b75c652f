import ApiLambda
import ArgumentParser
import Foundation
import InferenceService
import Logging
import SDQPlatform

/// `sdq generate PROMPT`: the main job. Without `--server` it runs every service in this process
/// (the same services and code paths as a deployment), submits through the API handler, waits
/// with a progress display, writes the PNGs and prints their paths and the stage timings.
struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Generate images and write them to disk.")

    @OptionGroup var generation: GenerationOptions

    @Option(help: "Directory the images are written to.")
    var output: String = "./sdq-output"

    @Option(help: "Use this sdq API instead of running the pipeline in-process.")
    var server: String?

    @Option(name: .customLong("api-key"), help: "API key for --server.")
    var apiKey: String?

    @Flag(help: "Print the final task document and file paths as JSON.")
    var json = false

    @Option(name: .customLong("step-ms"), help: "Per-step delay of the in-process emulator, in milliseconds.")
    var stepMilliseconds: Int = 10

    @Option(help: "Seconds to wait for the task.")
    var timeout: Int = 600

    func run() async throws {
        try await reportingFailures { try await generate() }
    }

    private func generate() async throws {
        let (configuration, logger) = try prepareEnvironment(defaultLevel: .warning)
        let display = ProgressDisplay(enabled: !json)
        let started = ContinuousClock.now
        let (document, images): (TaskDocument, [Data])
        if let server {
            let client = SDQClient(baseURL: server, apiKey: apiKey ?? configuration.apiKeys.first)
            (document, images) = try await remote(client, display: display)
        } else {
            let stack = try await InProcessStack.open(
                configuration: configuration, emulatorStepDelay: .milliseconds(max(0, stepMilliseconds)),
                receiveWait: .milliseconds(500), logger: logger)
            do {
                (document, images) = try await stack.whileRunning { try await self.local(stack, display: display) }
                await stack.close()
            } catch {
                await stack.close()
                throw error
            }
        }
        display.finish()
        try report(document, images: images, elapsed: started.duration(to: .now))
    }

    private func local(_ stack: InProcessStack, display: ProgressDisplay) async throws -> (TaskDocument, [Data]) {
        let submitted = await stack.handler.handle(
            APIRequest(method: "POST", path: "/v1/tasks", headers: ["content-type": "application/json", "host": "localhost"],
                       body: generation.requestBody.serialized()))
        let accepted = try decodeDocument(submitted, expecting: 202)
        let deadline = ContinuousClock.now + .seconds(timeout)
        while true {
            let response = await stack.handler.handle(APIRequest(method: "GET", path: "/v1/tasks/\(accepted.id)", headers: ["host": "localhost"]))
            let document = try decodeDocument(response, expecting: 200)
            display.update(document)
            if document.status.isTerminal {
                guard let record = try await stack.context.transport.tasks.get(id: document.id) else {
                    throw CommandFailure(description: "task \(document.id) vanished", exitCode: 1)
                }
                var images: [Data] = []
                for image in record.images {
                    guard let object = try await stack.context.transport.objects.get(key: image.key) else {
                        throw CommandFailure(description: "image \(image.key) is missing", exitCode: 1)
                    }
                    images.append(object.data)
                }
                return (document, images)
            }
            guard ContinuousClock.now < deadline else {
                throw CommandFailure(description: "task \(accepted.id) did not finish within \(timeout) s", exitCode: 1)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private func remote(_ client: SDQClient, display: ProgressDisplay) async throws -> (TaskDocument, [Data]) {
        let accepted = try await client.submit(generation.requestBody)
        let document = try await client.follow(accepted.id, timeout: .seconds(timeout)) { display.update($0) }
        var images: [Data] = []
        for image in document.images { images.append(try await client.download(image.url)) }
        return (document, images)
    }

    private func decodeDocument(_ response: APIResponse, expecting status: Int) throws -> TaskDocument {
        guard response.status == status else {
            let json = try? JSONValue.parse(response.body)
            let code = json?["error"]?["code"]?.stringValue ?? "error"
            let message = json?["error"]?["message"]?.stringValue ?? "HTTP \(response.status)"
            throw CommandFailure(description: "\(code): \(message)", exitCode: 2)
        }
        return try JSONDecoder().decode(TaskDocument.self, from: response.body)
    }

    private func report(_ document: TaskDocument, images: [Data], elapsed: Duration) throws {
        var paths: [String] = []
        if document.status == .succeeded {
            let directory = URL(fileURLWithPath: output, isDirectory: true)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for (index, data) in images.enumerated() {
                // A workflow's video or audio keeps its own extension.
                let type = index < document.images.count ? document.images[index].contentType : "image/png"
                let file = directory.appendingPathComponent("\(document.id)-\(index).\(MediaTypes.fileExtension(of: type))")
                try data.write(to: file)
                paths.append(file.path)
            }
        }
        if json {
            let files = JSONValue.array(paths.map { .string($0) })
            var object = try document.jsonValue().objectValue ?? [:]
            object["files"] = files
            print(String(decoding: JSONValue.object(object).serialized(), as: UTF8.self))
        } else {
            for path in paths { print(path) }
            printError(TimingsReport.describe(document, elapsed: elapsed))
        }
        switch document.status {
        case .succeeded: return
        case .cancelled: throw CommandFailure(description: "task \(document.id) was cancelled", exitCode: 3)
        default:
            let reason = document.error.map { "\($0.code): \($0.message)" } ?? "unknown error"
            throw CommandFailure(description: "task \(document.id) failed: \(reason)", exitCode: 1)
        }
    }
}
