import Foundation
import InferenceService
import SDQPlatform
import SDQTestSupport
import Sdq
import Testing

/// One rule for the runtime (`RuntimeSelection`), seen from the outside: the `sdq` binary run as a
/// user runs it.
@Suite(.serialized) struct RuntimeChoiceProcessTests {
    /// `SDQ_RUNTIME=sdwebui SDQ_RUNTIME_URL=… sdq generate` with no pools file drives the HTTP
    /// runtime (not the built-in emulator) and leaves the runtime's loaded checkpoint alone: the
    /// picture is the one the runtime renders with the model it had loaded.
    @Test func sdqRuntimeWithoutAPoolsFileDrivesTheHTTPRuntime() async throws {
        let directory = TemporaryDirectory()
        let runtime = try SdqProcess.start(
            ["emulate-runtime", "--port", "0", "--step-ms", "1", "--models", "probe-v2,emulator-v1"], environment: [:], in: directory)
        defer { runtime.kill(SIGKILL) }
        let url = try #require(await runtime.listeningURL(), "the emulator did not start: \(runtime.log)")
        let output = directory.url.appendingPathComponent("images")
        let run = try SdqProcess.start(
            ["generate", "through http", "--seed", "5", "--width", "64", "--height", "64", "--steps", "2", "--json",
             "--output", output.path],
            environment: [
                "SDQ_DATA_DIR": directory.url.appendingPathComponent("data").path, "SDQ_POOLS_FILE": "",
                "SDQ_RUNTIME": "sdwebui", "SDQ_RUNTIME_URL": url, "LOG_LEVEL": "warning",
            ],
            in: directory)
        #expect(await run.waitForExit(timeout: .seconds(120)) == 0, "generate failed: \(run.log)")
        let line = try #require(run.log.split(separator: "\n").first { $0.hasPrefix("{") }, "\(run.log)")
        let document = try JSONValue.parse(Data(line.utf8))
        #expect(document["status"]?.stringValue == "succeeded")
        #expect(document["model"]?.stringValue == PoolConfiguration.runtimeDefaultModel)
        guard case .array(let files)? = document["files"], let path = files.first?.stringValue else {
            Issue.record("no file in \(line)")
            return
        }
        let expected = try EmulatorImage.png(EmulatorImage.Parameters(
            prompt: "through http", model: "probe-v2", seed: 5, width: 64, height: 64, steps: 2, cfgScale: 7, sampler: "Euler a"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == expected)
    }

    /// A pools file that says `emulator` and `SDQ_RUNTIME=sdwebui` contradict each other: `sdq up`
    /// refuses to start and names both, instead of silently running the emulator.
    @Test func aConflictBetweenThePoolsFileAndSdqRuntimeRefusesToStart() async throws {
        let directory = TemporaryDirectory()
        let poolsFile = directory.url.appendingPathComponent("pools.yaml")
        try "pools: [{name: default, runtime: emulator, models: [emulator-v1]}]".write(to: poolsFile, atomically: true, encoding: .utf8)
        let up = try SdqProcess.start(
            ["up", "--port", "0"],
            environment: [
                "SDQ_DATA_DIR": directory.url.appendingPathComponent("data").path, "SDQ_POOLS_FILE": poolsFile.path,
                "SDQ_RUNTIME": "sdwebui", "SDQ_RUNTIME_URL": "http://127.0.0.1:9",
            ],
            in: directory)
        let status = await up.waitForExit(timeout: .seconds(60))
        if status == nil { up.kill(SIGKILL) }
        #expect(status != nil && status != 0, "sdq up started despite the conflict: \(up.log)")
        #expect(up.log.contains("SDQ_RUNTIME=sdwebui"), "\(up.log)")
        #expect(up.log.contains("pool default in \(poolsFile.path)"), "\(up.log)")
        #expect(!up.log.contains("listening on "))
    }

    /// An `SDQ_*` variable nothing reads is reported at start, with the name it probably meant.
    @Test func aMistypedSettingIsReportedAtStart() async throws {
        let directory = TemporaryDirectory()
        let run = try SdqProcess.start(
            ["generate", "typo", "--seed", "1", "--width", "64", "--height", "64", "--steps", "1",
             "--output", directory.url.appendingPathComponent("images").path],
            environment: [
                "SDQ_DATA_DIR": directory.url.appendingPathComponent("data").path, "SDQ_POOLS_FILE": "",
                "SDQ_RUNTIME": "", "SDQ_RUNTIME_URL": "", "SDQ_RUNTIME_ULR": "http://127.0.0.1:7860", "SDQ_LOG_FORMAT": "text",
            ],
            in: directory)
        #expect(await run.waitForExit(timeout: .seconds(120)) == 0, "generate failed: \(run.log)")
        #expect(run.log.contains("SDQ_RUNTIME_ULR is set but no part of sdq reads it"), "\(run.log)")
        #expect(run.log.contains("did you mean SDQ_RUNTIME_URL?"), "\(run.log)")
    }
}
