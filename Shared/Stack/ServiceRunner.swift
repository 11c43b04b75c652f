import Foundation
import Logging
import SDQPlatform
import SDQTelemetry
import ServiceLifecycle

/// The body of every service executable: read the environment, set up logging, open the stack,
/// run the services until SIGTERM/SIGINT, shut down gracefully. Configuration errors end the
/// process with a clear message and exit code 78 (EX_CONFIG). `SDQ_*` variables that sdq does not
/// read are reported as warnings (``SettingsCheck``); `SDQ_HEALTH_FILE` adds a ``HealthFile``.
public enum ServiceRunner {
    public static func run(
        name: String, _ build: @Sendable (StackContext, SDQConfiguration, Logger) async throws -> [any Service]
    ) async {
        let configuration: SDQConfiguration
        do { configuration = try SDQConfiguration.fromEnvironment() } catch {
            FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
            exit(78)
        }
        LoggingSetup.bootstrap(level: configuration.logLevel, format: configuration.logFormat, service: name)
        let logger = Logger(label: name)
        SettingsCheck.warnAboutUnknownVariables(logger: logger)
        do {
            let context = try await StackContext.open(configuration, logger: logger)
            // Exporters first: a service group stops in reverse order, so they flush last.
            let export = Telemetry.start(services: [name], metricsService: name, logger: logger)
            var services = (export?.services ?? []) + (try await build(context, configuration, logger))
            if let path = configuration.healthFile {
                services.append(HealthFile(path: path, logger: logger))
            }
            let group = ServiceGroup(
                configuration: .init(
                    services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            logger.info("\(name) started", metadata: ["stack": "\(configuration.stack)", "transport": "\(configuration.transport.rawValue)"])
            try await group.run()
        } catch let error as ConfigurationError {
            logger.critical("invalid configuration", metadata: ["error": "\(error)"])
            exit(78)
        } catch {
            logger.critical("\(name) stopped", metadata: ["error": "\(error)"])
            exit(1)
        }
    }
}
