import ApiLambda
import InferenceService
import ArgumentParser
import Foundation
import Logging
import SDQPlatform
import SDQTelemetry
import ServiceLifecycle
import ApiHTTP
import EmulatorServer

/// `sdq up`: every service in one process with the HTTP API on a port. SIGTERM or SIGINT shut it
/// down gracefully (workers hand unfinished tasks back); a task accepted before a crash is still
/// in the durable queue and completes after a restart.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Serve the whole pipeline on one machine.")

    @Option(help: "HTTP port of the API (default: SDQ_HTTP_PORT or 8080).")
    var port: Int?

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Inference workers per pool.")
    var workers: Int = 1

    @Option(name: .customLong("step-ms"), help: "Per-step delay of the in-process emulator, in milliseconds.")
    var stepMilliseconds: Int = 50

    func run() async throws {
        let (configuration, logger) = try prepareEnvironment(defaultLevel: .info)
        // On AWS every receive is a billed request: long polls of SQS's longest wait keep an idle
        // stack near one request per consumer per 20 s (shutdown then waits for them to end, as
        // the consumers let a pending poll finish). Embedded receives are local: short waits keep
        // shutdown quick.
        let stack = try await InProcessStack.open(
            configuration: configuration, workersPerPool: workers, emulatorStepDelay: .milliseconds(max(0, stepMilliseconds)),
            receiveWait: configuration.transport == .aws ? .seconds(20) : .seconds(2), logger: logger)
        let server = APIHTTPServer(
            handler: stack.handler, host: host, port: port ?? configuration.httpPort, logger: logger.with(label: "api")
        ) { bound in
            logger.notice("sdq is up", metadata: ["url": "http://\(host):\(bound)", "data_dir": "\(configuration.dataDirectory)"])
            // A line for scripts and tests that wait for the port.
            FileHandle.standardOutput.write(Data("listening on http://\(host):\(bound)\n".utf8))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: try stack.services().map { .init(service: $0) } + [.init(service: stack.traced(server, as: "api"))],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        await stack.close()
    }
}

/// `sdq emulate-runtime`: an A1111-compatible runtime emulator over HTTP.
struct EmulateRuntimeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulate-runtime", abstract: "Serve an SD WebUI API-compatible runtime emulator.")

    @Option(help: "Port to listen on.")
    var port: Int = 7860

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(name: .customLong("step-ms"), help: "Simulated time per sampling step, in milliseconds.")
    var stepMilliseconds: Int = 50

    @Option(help: "Models the emulator reports (comma-separated).")
    var models: String = PoolConfiguration.emulatorModel

    @Option(name: .customLong("error-rate"), help: "Share of generations answered 500 (0...1).")
    var errorRate: Double = 0

    @Option(name: .customLong("latency-ms"), help: "Delay added before every generation, in milliseconds.")
    var latencyMilliseconds: Int = 0

    @Option(name: .customLong("hang-rate"), help: "Share of generations that hang until interrupted (0...1).")
    var hangRate: Double = 0

    @Option(name: .customLong("crash-rate"), help: "Share of generations on which the process exits (0...1).")
    var crashRate: Double = 0

    @Option(name: .customLong("model-switch-ms"), help: "Time a checkpoint switch takes, in milliseconds.")
    var modelSwitchMilliseconds: Int = 0

    @Option(name: .customLong("model-dir"), help: "The model folder (SD WebUI layout) the inference service caches registered models into.")
    var modelDirectory: String?

    func run() async throws {
        let (_, logger) = try prepareEnvironment(defaultLevel: .info)
        let emulator = EmulatorServer(
            host: host, port: port, stepDelay: .milliseconds(max(0, stepMilliseconds)),
            models: models.split(separator: ",").map(String.init),
            faults: EmulatorFaults(
                errorRate: errorRate, latency: .milliseconds(max(0, latencyMilliseconds)), hangRate: hangRate, crashRate: crashRate,
                modelSwitchDelay: .milliseconds(max(0, modelSwitchMilliseconds))),
            modelDirectory: modelDirectory.map { URL(fileURLWithPath: $0) }, logger: logger
        ) { bound in
            FileHandle.standardOutput.write(Data("listening on http://\(host):\(bound)\n".utf8))
        }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: emulator)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
