import Hummingbird
import Logging
import ServiceLifecycle

/// Serves `router` on a free loopback port while `body` runs (the test doubles of peers sdq does
/// not run: the Lambda Runtime API, AWS credential endpoints), then shuts it down.
public func withLoopbackServer<T: Sendable>(
    _ router: Router<BasicRequestContext>, _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    let port = PortBox()
    var logger = Logger(label: "loopback-server")
    logger.logLevel = .critical
    let app = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { await port.set($0.localAddress?.port ?? 0) }, logger: logger)
    let group = ServiceGroup(configuration: .serverUnderTest([app], logger: logger))
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        defer { tasks.cancelAll() }
        do {
            let value = try await body(await port.wait())
            await group.triggerGracefulShutdown()
            return value
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
    }
}

extension ServiceGroupConfiguration {
    /// A group running an HTTP server under test. Its graceful shutdown waits for open
    /// connections; `HTTPClient.shared` keeps idle ones for 600 s, so after 5 s the group cancels
    /// the server instead of waiting for the client.
    public static func serverUnderTest(_ services: [ServiceGroupConfiguration.ServiceConfiguration], logger: Logger) -> Self {
        var configuration = ServiceGroupConfiguration(services: services, logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(5)
        return configuration
    }

    /// ``serverUnderTest(_:logger:)`` for plain services.
    public static func serverUnderTest(_ services: [any Service], logger: Logger) -> Self {
        serverUnderTest(services.map { .init(service: $0) }, logger: logger)
    }
}
