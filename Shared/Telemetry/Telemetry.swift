import Foundation
import Logging
import Metrics
import OTel
import ServiceLifecycle
import Synchronization
import Tracing

/// OpenTelemetry export (traces and metrics over OTLP/HTTP to the collector sidecar), on only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`). Without it every
/// span and metric goes to swift-distributed-tracing's and swift-metrics' no-op backends, so the
/// code paths are the same and cost next to nothing.
///
/// The standard `OTEL_*` variables apply (swift-otel reads them): endpoint, `OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_METRIC_EXPORT_INTERVAL`, sampler.
/// sdq's defaults: spans batched for 1 s, metrics exported every 10 s, logs stay sdq's own JSON
/// lines (carrying `trace_id` and `span_id`).
public enum Telemetry {
    /// Whether export is configured in `environment`.
    public static func exportConfigured(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let endpoint = environment["OTEL_EXPORTER_OTLP_ENDPOINT"], !endpoint.isEmpty else { return false }
        return !["true", "1"].contains(environment["OTEL_SDK_DISABLED"]?.lowercased() ?? "")
    }

    /// What ``start(services:metricsService:logger:)`` set up.
    public struct Export: Sendable {
        /// The exporters' services: run them first in the service group (shut down last, so they
        /// flush what the other services recorded).
        public let services: [any Service]
        let tracers: [String: any Tracer]

        /// The tracer whose spans carry `service.name` = `service`.
        public func tracer(for service: String) -> (any Tracer)? { tracers[service] }
    }

    private static let bootstrapped = Mutex(false)

    static func configuration(serviceName: String, logger: Logger) -> OTel.Configuration {
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.resourceAttributes = ["service.namespace": "sdq"]
        configuration.diagnosticLogger = .custom(logger)
        // Configuration notes are info; only problems (export failures) reach the logs.
        configuration.diagnosticLogLevel = .warning
        configuration.logs.enabled = false
        configuration.traces.batchSpanProcessor.scheduleDelay = .seconds(1)
        configuration.metrics.exportInterval = .seconds(10)
        // Durations from milliseconds (queue hops) to minutes (a large batch on a busy GPU).
        configuration.metrics.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(20),
            .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(600),
        ]
        return configuration
    }

    /// Starts export when configured: one tracer per service name in `services` (each span's
    /// resource says which service made it; the first tracer is also the process-wide one) and one
    /// metrics backend named `metricsService`. Nil when export is off or cannot start (logged).
    /// Process-wide backends are bootstrapped once per process.
    public static func start(services: [String], metricsService: String, logger: Logger) -> Export? {
        guard exportConfigured(), let primary = services.first else { return nil }
        do {
            var exporters: [any Service] = []
            var tracers: [String: any Tracer] = [:]
            for name in services {
                let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration(serviceName: name, logger: logger))
                tracers[name] = tracer
                exporters.append(service)
            }
            let (factory, metrics) = try OTel.makeMetricsBackend(configuration: configuration(serviceName: metricsService, logger: logger))
            exporters.append(metrics)
            let fresh = bootstrapped.withLock { done in
                defer { done = true }
                return !done
            }
            if fresh, let tracer = tracers[primary] {
                InstrumentationSystem.bootstrap(tracer)
                MetricsSystem.bootstrap(factory)
            }
            logger.info("exporting traces and metrics over OTLP", metadata: ["services": "\(services.joined(separator: ","))"])
            return Export(services: exporters, tracers: tracers)
        } catch {
            logger.error("OpenTelemetry export could not start; continuing without it", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Log metadata from the current span (`trace_id`, `span_id`, `trace_flags`).
    public static var loggingMetadataProvider: Logger.MetadataProvider { OTel.makeLoggingMetadataProvider() }
}

/// Runs a service with its own tracer active (several services in one process, each exporting
/// under its own `service.name`).
public struct TracedService: Service {
    public let base: any Service
    public let tracer: any Tracer

    public init(_ base: any Service, tracer: any Tracer) {
        self.base = base
        self.tracer = tracer
    }

    public func run() async throws {
        try await withTracer(tracer) { try await base.run() }
    }
}

extension Telemetry.Export {
    /// `service` running under the tracer of `name`, or unchanged when there is none.
    public func traced(_ service: any Service, as name: String) -> any Service {
        guard let tracer = tracer(for: name) else { return service }
        return TracedService(service, tracer: tracer)
    }
}
