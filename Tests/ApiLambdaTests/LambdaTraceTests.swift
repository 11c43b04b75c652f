import ApiLambda
import Foundation
import OTel
import SDQLambdaRuntime
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing
import Tracing

/// On Lambda the invocation's X-Ray trace (`Lambda-Runtime-Trace-Id`) is the parent of the API's
/// span, and the task carries that trace on to the dispatcher.
@Suite(.serialized) struct LambdaTraceTests {
    @Test func theInvocationTraceIsTheParentOfTheTasksTrace() async throws {
        let fixture = try await EmbeddedFixture.make()
        let api = APIHandler(context: fixture.context, logger: testLogger())
        // A real tracer (its exporter is never started: only propagation is looked at).
        let (tracer, _) = try OTel.makeTracingBackend(configuration: .default)
        try await withTracer(tracer) {
            try await RuntimeAPIDouble.run { endpoint, state in
                let submit = #"{"version":"2.0","rawPath":"/v1/tasks","rawQueryString":"","headers":{"content-type":"application/json"},"requestContext":{"http":{"method":"POST","path":"/v1/tasks"}},"body":"{\"prompt\":\"traced on lambda\"}","isBase64Encoded":false}"#
                await state.enqueue(
                    id: "req-1", payload: Data(submit.utf8),
                    trace: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
                let runtime = LambdaRuntime(
                    client: HTTPLambdaRuntimeClient(endpoint: endpoint), handler: APILambdaHandler(api: api), logger: testLogger(),
                    exportsTraceID: false)
                try await runtime.run(limit: 1)
            }
        }
        let messages = try await fixture.queue(fixture.context.names.dispatchQueue).receive(maxMessages: 1, wait: .zero, visibilityTimeout: nil)
        let message = try #require(messages.first)
        let task = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: message.body, attributes: message.attributes)
        let parts = task.trace.traceparent.split(separator: "-")
        #expect(parts.count == 4)
        #expect(parts[1] == "5759e988bd862e3fe1be46a994272793", "the X-Ray root is the trace id")
        #expect(parts[2] != "53995c3f42cd8ad8", "the parent is the API's own span, a child of the invocation")
        #expect(message.attributes[MessageAttribute.traceparent] == task.trace.traceparent)
    }
}
