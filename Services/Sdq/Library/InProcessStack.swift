import ApiLambda
import Dispatcher
import Foundation
import InferenceService
import Logging
import ResultWriter
import SDQPlatform
import SDQTelemetry
import ServiceLifecycle
import SDQStack

/// Every sdq service in one process, over the configured transport: what `sdq generate` (without
/// `--server`) and `sdq up` run. The services are the same types the separate executables run.
public struct InProcessStack: Sendable {
    public let context: StackContext
    public var handler: APIHandler
    public var configuration: SDQConfiguration
    /// Inference workers per pool.
    public var workersPerPool: Int
    /// Per-step delay of the in-process emulator.
    public var emulatorStepDelay: Duration
    /// Receive wait of the internal consumers (short keeps shutdown quick).
    public var receiveWait: Duration
    public var workerVisibilityTimeout: Duration
    public let logger: Logger
    /// OTLP export (`OTEL_EXPORTER_OTLP_ENDPOINT`): each service spans under its own name.
    public var telemetry: Telemetry.Export?

    /// Opens the transport, provisions the stack and builds the API handler.
    public static func open(
        configuration: SDQConfiguration, workersPerPool: Int = 1, emulatorStepDelay: Duration = .milliseconds(10),
        receiveWait: Duration = .seconds(2), logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> InProcessStack {
        let context = try await StackContext.open(configuration, logger: logger, environment: environment)
        let handler = try await APIHandler.configured(
            context: context, configuration: configuration, logger: logger, environment: environment)
        let telemetry = Telemetry.start(
            services: ["api", "dispatcher", "inference-service", "result-writer"], metricsService: "sdq", logger: logger)
        return InProcessStack(
            context: context, handler: handler, configuration: configuration, workersPerPool: max(1, workersPerPool),
            emulatorStepDelay: emulatorStepDelay, receiveWait: receiveWait,
            workerVisibilityTimeout: context.pools.queues.workerVisibilityTimeout, logger: logger, telemetry: telemetry)
    }

    /// `service` under the tracer of `name` when exporting.
    public func traced(_ service: any Service, as name: String) -> any Service {
        telemetry?.traced(service, as: name) ?? service
    }

    /// The exporters (first, so they flush last), the dispatcher, the result-writer and the
    /// inference workers of every pool, each under its own tracer when exporting.
    public func services() throws -> [any Service] {
        (telemetry?.services ?? []) + (try untracedServices()).map { traced($0.service, as: $0.name) }
    }

    private func untracedServices() throws -> [(name: String, service: any Service)] {
        var services: [any Service] = [
            Dispatcher(context: context, logger: logger.with(label: "dispatcher"), receiveWait: receiveWait),
            ResultWriter(
                context: context, logger: logger.with(label: "result-writer"), receiveWait: receiveWait,
                webhookPolicy: OutboundURLPolicy(allowPrivate: configuration.webhookAllowPrivate),
                publicBaseURL: handler.publicBaseURL),
        ]
        for pool in context.pools.pools {
            // The pool's workers share one model folder, so one cache (one download per file).
            let modelDirectory = configuration.effectiveModelDirectory.map { URL(fileURLWithPath: $0).appendingPathComponent(pool.name) }
            let modelCache = modelDirectory.map {
                InferenceWorker.makeModelCache(at: $0, pool: pool, objects: context.transport.objects)
            }
            // An HTTP runtime runs one generation at a time and its progress and interrupt endpoints
            // are global: one worker per runtime. The in-process emulator scales with workers.
            let workers = pool.runtimeKind == .emulator ? workersPerPool : 1
            // Progress writes cost nothing on the embedded store: often enough for a smooth bar
            // on an event stream. On DynamoDB each is a write unit: every 2 s.
            let progressInterval: Duration = configuration.transport == .embedded ? .milliseconds(250) : .seconds(2)
            for _ in 0..<workers {
                // Each emulator worker is its own GPU: its own loaded checkpoint.
                let runtime = try runtime(for: pool, defaultPool: context.pools.defaultPool.name)
                let configuration = InferenceConfiguration(
                    pool: pool.name, visibilityTimeout: workerVisibilityTimeout, receiveWait: receiveWait, progressInterval: progressInterval,
                    fetchPolicy: OutboundURLPolicy(allowPrivate: configuration.fetchAllowPrivate),
                    previewInterval: configuration.previewInterval,
                    modelDirectory: modelDirectory)
                services.append(
                    InferenceWorker(
                        context: context, runtime: runtime, configuration: configuration,
                        logger: logger.with(label: "inference-service"), modelCache: modelCache))
            }
        }
        return services.map { service in
            let name: String =
                switch service {
                case is Dispatcher: "dispatcher"
                case is ResultWriter: "result-writer"
                default: "inference-service"
                }
            return (name, service)
        }
    }

    /// The pool's runtime by ``RuntimeSelection``'s one rule; `SDQ_RUNTIME`/`SDQ_RUNTIME_URL` apply
    /// to the default pool.
    private func runtime(for pool: PoolSpec, defaultPool: String) throws -> any RuntimeBackend {
        let selection = try RuntimeSelection.resolve(pool: pool, configuration: configuration, isTarget: pool.name == defaultPool)
        return makeRuntimeBackend(
            for: selection, emulatorStepDelay: emulatorStepDelay, queueAhead: configuration.runtimeQueueAhead,
            modelDirectory: configuration.effectiveModelDirectory.map { $0 + "/" + pool.name })
    }

    /// Runs the services while `body` runs, then shuts them down gracefully (workers hand
    /// unfinished tasks back to their queue) and returns what `body` returned.
    public func whileRunning<T: Sendable>(_ body: @Sendable @escaping () async throws -> T) async throws -> T {
        let group = ServiceGroup(
            configuration: .init(services: try services().map { .init(service: $0) }, logger: logger))
        return try await withThrowingTaskGroup(of: T?.self) { tasks in
            tasks.addTask {
                try await group.run()
                return nil
            }
            tasks.addTask { try await body() }
            var result: T?
            do {
                while let value = try await tasks.next() {
                    if let value {
                        result = value
                        await group.triggerGracefulShutdown()
                    } else if result == nil {
                        throw CancellationError()  // the services stopped before the body finished
                    }
                }
            } catch {
                await group.triggerGracefulShutdown()
                tasks.cancelAll()
                throw error
            }
            guard let result else { throw CancellationError() }
            return result
        }
    }

    /// Closes the transport.
    public func close() async {
        await context.transport.close()
    }
}

extension Logger {
    /// A copy with another label, same level.
    func with(label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        return logger
    }
}
