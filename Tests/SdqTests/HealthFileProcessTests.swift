import Foundation
import SDQTestSupport
import Testing

/// `SDQ_HEALTH_FILE`, the liveness of the images' port-less services, on the real executable: the
/// file is written while the service runs (and kept fresh), and removed when SIGTERM stops it.
@Suite(.serialized) struct HealthFileProcessTests {
    @Test func aRunningServiceKeepsItsHealthFileFreshAndRemovesItOnSIGTERM() async throws {
        let directory = TemporaryDirectory()
        let health = directory.url.appendingPathComponent("health")
        let binary = SdqProcess.binary.deletingLastPathComponent().appendingPathComponent("result-writer")
        let output = directory.url.appendingPathComponent("result-writer.log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = binary
        process.environment = ProcessInfo.processInfo.environment.merging([
            "SDQ_DATA_DIR": directory.url.appendingPathComponent("data").path, "SDQ_POOLS_FILE": "",
            "SDQ_RUNTIME": "", "SDQ_RUNTIME_URL": "", "SDQ_TRANSPORT": "embedded", "SDQ_HEALTH_FILE": health.path,
        ]) { $1 }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        func written() -> Int? {
            (try? String(contentsOf: health, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        let log = { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }
        #expect(await eventually(timeout: .seconds(30)) { written() != nil }, "no health file: \(log())")
        let first = try #require(written())
        #expect(abs(first - Int(Date().timeIntervalSince1970)) <= 5)
        // Rewritten every 5 s while the service runs.
        #expect(await eventually(timeout: .seconds(15)) { (written() ?? 0) > first }, "health file not refreshed")
        kill(process.processIdentifier, SIGTERM)
        #expect(await eventually(timeout: .seconds(30)) { !process.isRunning })
        #expect(process.terminationStatus == 0, "\(log())")
        #expect(!FileManager.default.fileExists(atPath: health.path), "the health file outlived the service")
    }
}
