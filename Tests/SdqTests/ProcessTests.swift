import Foundation
import SDQAWS
import SDQAWSTransport
import SDQPlatform
import SDQTestSupport
import Sdq
import Testing

/// The built `sdq` executable, run as a separate process.
struct SdqProcess: @unchecked Sendable {
    let process: Process
    let output: URL

    /// The `sdq` binary next to the test bundle (`swift build --build-tests` builds both).
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sdq")
    }

    static func start(_ arguments: [String], environment: [String: String], in directory: TemporaryDirectory) throws -> SdqProcess {
        let output = directory.url.appendingPathComponent("out-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.currentDirectoryURL = directory.url
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try AWSTestEnvironment.launch(process)
        return SdqProcess(process: process, output: output)
    }

    var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// The URL from the "listening on …" line.
    func listeningURL(timeout: Duration = .seconds(30)) async -> String? {
        let found = await eventually(timeout: timeout) { log.contains("listening on http://") }
        guard found, let line = log.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }) else { return nil }
        return String(line.dropFirst("listening on ".count))
    }

    func kill(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    func waitForExit(timeout: Duration = .seconds(30)) async -> Int32? {
        guard await eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }
}

@Suite(.serialized) struct ProcessTests {
    static let pools = """
        pools:
          - name: default
            runtime: emulator
            models: [emulator-v1]
        queues:
          worker_visibility_timeout_seconds: 2
        """

    func environment(_ directory: TemporaryDirectory) throws -> [String: String] {
        let poolsFile = directory.url.appendingPathComponent("pools.yaml")
        try Self.pools.write(to: poolsFile, atomically: true, encoding: .utf8)
        return [
            "SDQ_DATA_DIR": directory.url.appendingPathComponent("data").path, "SDQ_POOLS_FILE": poolsFile.path,
            "LOG_LEVEL": "warning", "SDQ_LOG_FORMAT": "text",
        ]
    }

    @Test func anAcceptedTaskCompletesAfterSdqUpIsKilledAndRestarted() async throws {
        let directory = TemporaryDirectory()
        let environment = try environment(directory)
        let first = try SdqProcess.start(["up", "--port", "0", "--step-ms", "100"], environment: environment, in: directory)
        let firstURL = try #require(await first.listeningURL(), "sdq up did not start: \(first.log)")
        let client = SDQClient(baseURL: firstURL)
        let accepted = try await client.submit(.object([
            "prompt": .string("survives a crash"), "seed": .number(42), "width": .number(64), "height": .number(64),
            "steps": .number(60),
        ]))
        #expect(await eventually { try await client.status(accepted.id).status == .running })
        first.kill(SIGKILL)
        #expect(await first.waitForExit() == SIGKILL)

        let second = try SdqProcess.start(["up", "--port", "0", "--step-ms", "2"], environment: environment, in: directory)
        let secondURL = try #require(await second.listeningURL(), "sdq up did not restart: \(second.log)")
        let done = try await SDQClient(baseURL: secondURL).wait(accepted.id, interval: .milliseconds(100), timeout: .seconds(60))
        #expect(done.status == .succeeded)
        #expect(done.images.first?.seed == 42)

        // The client commands against the running server.
        let waited = try SdqProcess.start(["wait", accepted.id, "--server", secondURL, "--json"], environment: environment, in: directory)
        #expect(await waited.waitForExit() == 0)
        #expect(waited.log.contains("\"status\" : \"succeeded\""))
        let missing = try SdqProcess.start(["status", TaskID.generate(), "--server", secondURL], environment: environment, in: directory)
        #expect(await missing.waitForExit() == 2)
        #expect(missing.log.contains("task_not_found"))
        let waitMissing = try SdqProcess.start(["wait", TaskID.generate(), "--server", secondURL], environment: environment, in: directory)
        #expect(await waitMissing.waitForExit() == 2, "a missing task is an error, not a poll forever")
        let listed = try SdqProcess.start(["ls", "--server", secondURL, "--status", "succeeded"], environment: environment, in: directory)
        #expect(await listed.waitForExit() == 0)
        #expect(listed.log.contains(accepted.id) && listed.log.contains("succeeded"), "sdq ls: \(listed.log)")
        let none = try SdqProcess.start(["ls", "--server", secondURL, "--status", "failed", "--json"], environment: environment, in: directory)
        #expect(await none.waitForExit() == 0)
        #expect(none.log.contains(#"{"next_cursor":null,"tasks":[]}"#), "sdq ls --json: \(none.log)")
        let usage = try SdqProcess.start(["usage", "--server", secondURL], environment: environment, in: directory)
        #expect(await usage.waitForExit() == 0)
        #expect(usage.log.contains("anonymous") && usage.log.contains("GPU SECONDS"), "sdq usage: \(usage.log)")
        let purged = try SdqProcess.start(["cancel", accepted.id, "--purge", "--server", secondURL], environment: environment, in: directory)
        #expect(await purged.waitForExit() == 0)
        #expect(purged.log.contains("\(accepted.id) succeeded purged"), "sdq cancel --purge: \(purged.log)")
        #expect(try await SDQClient(baseURL: secondURL).status(accepted.id).images.isEmpty)

        second.kill(SIGTERM)
        #expect(await second.waitForExit() == 0, "graceful shutdown on SIGTERM: \(second.log)")
    }

    /// The issue's check: `sdq aws init` twice, then `SDQ_TRANSPORT=aws sdq generate` writes the image
    /// locally, the same bytes are in the bucket, and the task record says `succeeded`.
    @Test(.enabled(if: AWSTestEnvironment.available, "needs an AWS emulator (moto)"))
    func awsInitTwiceThenGenerateOverAWS() async throws {
        let directory = TemporaryDirectory()
        let stack = AWSTestEnvironment.uniqueStack()
        var environment = try environment(directory).merging(AWSTestEnvironment.variables()) { $1 }
        environment["SDQ_STACK"] = stack
        for _ in 0..<2 {
            let initRun = try SdqProcess.start(["aws", "init"], environment: environment, in: directory)
            #expect(await initRun.waitForExit(timeout: .seconds(120)) == 0, "aws init failed: \(initRun.log)")
            #expect(initRun.log.contains("queue  \(stack)-pool-default  (dead letters: \(stack)-pool-default-dlq)"))
        }
        environment["SDQ_TRANSPORT"] = "aws"
        let run = try SdqProcess.start(
            ["generate", "a lighthouse at dusk", "--seed", "3", "--width", "96", "--height", "96", "--json"],
            environment: environment, in: directory)
        #expect(await run.waitForExit(timeout: .seconds(120)) == 0, "generate failed: \(run.log)")
        let line = try #require(run.log.split(separator: "\n").first { $0.hasPrefix("{") }, "\(run.log)")
        let document = try JSONValue.parse(Data(line.utf8))
        let id = try #require(document["id"]?.stringValue)
        #expect(document["status"]?.stringValue == "succeeded")
        guard case .array(let files)? = document["files"], let path = files.first?.stringValue else {
            Issue.record("no file in \(line)")
            return
        }
        let local = try Data(contentsOf: URL(fileURLWithPath: path))

        let transport = AWSTransport(
            environment: AWSEnvironment(AWSTestEnvironment.variables()), names: ResourceNames(stack: stack), logger: testLogger())
        let stored = try #require(try await transport.objects.get(key: "outputs/\(id)/image-0.png"))
        #expect(stored.data == local)
        #expect(try await transport.tasks.get(id: id)?.status == .succeeded)
    }

    @Test func generateWritesTheSameBytesForTheSameSeed() async throws {
        let directory = TemporaryDirectory()
        let environment = try environment(directory)
        var files: [String] = []
        for _ in 0..<2 {
            let run = try SdqProcess.start(
                ["generate", "a lighthouse at dusk", "--seed", "7", "--width", "128", "--height", "96", "--output", "images"],
                environment: environment, in: directory)
            #expect(await run.waitForExit(timeout: .seconds(60)) == 0, "generate failed: \(run.log)")
            let path = try #require(run.log.split(separator: "\n").first { $0.hasSuffix(".png") }.map(String.init), "\(run.log)")
            #expect(run.log.contains("timings:"))
            files.append(path)
        }
        let first = try Data(contentsOf: URL(fileURLWithPath: files[0]))
        let second = try Data(contentsOf: URL(fileURLWithPath: files[1]))
        #expect(files[0] != files[1])
        #expect(first == second)
        #expect(first.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))

        let bad = try SdqProcess.start(["generate", "x", "--width", "100"], environment: environment, in: directory)
        #expect(await bad.waitForExit() == 2)
        #expect(bad.log.contains("invalid_field"))
    }
}
