import Foundation
import InferenceService
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import EmulatorServer

/// Runs an ``EmulatorServer`` on a free loopback port while `body` runs with its base URL.
func withEmulatorServer<T: Sendable>(
    stepDelay: Duration = .milliseconds(10), models: [String] = ["emulator-v1", "other"], faults: EmulatorFaults = EmulatorFaults(),
    modelDirectory: URL? = nil, _ body: @Sendable (String) async throws -> T
) async throws -> T {
    let port = PortBox()
    let server = EmulatorServer(
        port: 0, stepDelay: stepDelay, models: models, faults: faults, modelDirectory: modelDirectory, logger: testLogger()
    ) {
        await port.set($0)
    }
    let group = ServiceGroup(configuration: .serverUnderTest([server], logger: testLogger()))
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        do {
            let value = try await body("http://127.0.0.1:\(await port.wait())")
            await group.triggerGracefulShutdown()
            return value
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
    }
}
