import Foundation
import SDQPlatform
import SDQTelemetry
import SDQTestSupport
import Sdq
import Testing

/// One trace from the HTTP request to the stored image, checked by an independent OTLP/HTTP
/// receiver (Python, opentelemetry-proto) that `sdq up` exports to.
@Suite(.serialized) struct TelemetryTests {
    struct Entry: Decodable {
        var kind: String
        var service: String?
        var name: String?
        var trace_id: String?
        var span_id: String?
        var parent_span_id: String?
        var attributes: [String: JSONValue]?
        var type: String?
        var count: Double?
        var sum: Double?
        var value: Double?
        var error: String?
    }

    /// Whether python3 can import opentelemetry-proto (asked without holding a thread).
    static func receiverAvailable() async -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import opentelemetry.proto.collector.trace.v1.trace_service_pb2"]
        process.standardError = FileHandle.nullDevice
        guard (try? await AWSTestEnvironment.runToExit(process)) != nil else { return false }
        return process.terminationStatus == 0
    }

    /// Needs python3 with opentelemetry-proto (`.ci/run` installs it; CI's `SDQ_REQUIRE_AWS_TESTS`
    /// makes its absence a failure rather than a skip).
    @Test(.enabled("needs python3 with opentelemetry-proto") {
        ProcessInfo.processInfo.environment["SDQ_REQUIRE_AWS_TESTS"] != nil ? true : await receiverAvailable()
    })
    func oneTaskIsOneTraceAcrossTheFourServicesWithItsMetrics() async throws {
        let receiver = try await LoopbackPythonServer.start(script: "otlp_receiver.py")
        defer { receiver.stop() }
        let directory = TemporaryDirectory()
        var environment = try ProcessTests().environment(directory)
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.baseURL
        environment["OTEL_BSP_SCHEDULE_DELAY"] = "100"
        environment["OTEL_METRIC_EXPORT_INTERVAL"] = "500"
        environment["SDQ_LOG_FORMAT"] = "json"
        environment["LOG_LEVEL"] = "info"
        let up = try SdqProcess.start(["up", "--port", "0", "--step-ms", "5"], environment: environment, in: directory)
        let url = try #require(await up.listeningURL(), "sdq up did not start: \(up.log)")
        let client = SDQClient(baseURL: url)
        let accepted = try await client.submit(.object(["prompt": .string("traced"), "width": .number(64), "height": .number(64), "steps": .number(8)]))
        let done = try await client.wait(accepted.id, interval: .milliseconds(100), timeout: .seconds(60))
        #expect(done.status == .succeeded)

        let services: Set<String> = ["api", "dispatcher", "inference-service", "result-writer"]
        func taskSpans() -> [Entry] {
            let all: [Entry] = receiver.entries().filter { $0.kind == "span" }
            guard let traceID = all.first(where: { $0.attributes?["sdq.task_id"]?.stringValue == accepted.id })?.trace_id else { return [] }
            return all.filter { $0.trace_id == traceID }
        }
        #expect(await eventually(timeout: .seconds(30)) { Set(taskSpans().compactMap(\.service)).isSuperset(of: services) })
        let spans = taskSpans()
        #expect(Set(spans.compactMap(\.service)).isSuperset(of: services), "\(spans.map { "\($0.service ?? "?") \($0.name ?? "?")" })")
        // One parent chain: from the result-writer's span up to the API's root span.
        let byID = Dictionary(spans.map { ($0.span_id ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        let write = try #require(spans.first { $0.name == "result-write" })
        var chain: [String] = []
        var cursor: Entry? = write
        while let span = cursor {
            chain.append(span.service ?? "?")
            cursor = (span.parent_span_id ?? "").isEmpty ? nil : byID[span.parent_span_id ?? ""]
        }
        #expect(chain.first == "result-writer" && chain.last == "api", "\(chain)")
        #expect(Set(chain) == services, "\(chain)")
        #expect(spans.contains { $0.name == "POST /v1/tasks" && ($0.parent_span_id ?? "").isEmpty })
        #expect(spans.contains { $0.name?.hasPrefix("runtime ") == true && $0.service == "inference-service" })

        // Metrics with sensible values (the export interval is half a second).
        func metric(_ name: String) -> [Entry] { receiver.entries().filter { $0.kind == "metric" && $0.name == name } }
        #expect(await eventually(timeout: .seconds(20)) { !metric("sdq_task_duration").isEmpty && !metric("sdq_backlog_messages").isEmpty })
        let duration = try #require(metric("sdq_task_duration").last)
        #expect(duration.type == "histogram" && (duration.count ?? 0) >= 1)
        #expect((duration.sum ?? 0) > 0 && (duration.sum ?? 0) < 60, "seconds from submission to the end")
        #expect(duration.attributes?["pool"]?.stringValue == "default" && duration.attributes?["outcome"]?.stringValue == "succeeded")
        let inference = try #require(metric("sdq_inference_duration").last)
        #expect((inference.sum ?? 0) > 0 && (inference.sum ?? 0) <= (duration.sum ?? 0))
        #expect(metric("sdq_queue_wait").last.map { ($0.count ?? 0) >= 1 } == true)
        #expect(metric("sdq_backlog_messages").allSatisfy { ($0.value ?? -1) >= 0 })
        #expect(receiver.entries().filter { (e: Entry) in e.kind == "error" }.isEmpty)

        // Log lines carry the trace of the task they are about.
        up.kill(SIGTERM)
        #expect(await up.waitForExit() == 0)
        let traceID = try #require(spans.first?.trace_id)
        #expect(up.log.split(separator: "\n").contains { $0.contains("\"trace_id\":\"\(traceID)\"") && $0.contains("\"task_id\":\"\(accepted.id)\"") })
    }

    @Test func nothingIsExportedWithoutAnEndpoint() {
        #expect(!Telemetry.exportConfigured([:]))
        #expect(!Telemetry.exportConfigured(["OTEL_EXPORTER_OTLP_ENDPOINT": ""]))
        #expect(!Telemetry.exportConfigured(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"]))
        #expect(Telemetry.exportConfigured(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]))
    }

    @Test func xrayAndW3CHeadersConvertBothWays() {
        let traceparent = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
        let xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        #expect(TraceCarrier.xrayHeader(traceparent: traceparent) == xray)
        #expect(TraceCarrier.traceparent(xrayHeader: xray) == traceparent)
        #expect(TraceCarrier.traceparent(xrayHeader: "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0") == nil)
        #expect(TraceCarrier.traceparent(xrayHeader: "garbage") == nil)
        #expect(TraceCarrier.xrayHeader(traceparent: "not-a-traceparent") == nil)
    }
}
