import ApiLambda
import Foundation
import SDQPlatform
import SDQTestSupport
import Sdq
import Testing

/// The issue's check, end to end on the services `sdq up` runs: with `SDQ_WEBHOOK_ALLOW_PRIVATE`
/// a loopback receiver gets exactly one `completed` delivery whose signature verifies with the
/// task's secret; without it, a callback to the instance metadata address is refused with a 400
/// naming the field.
@Suite struct WebhookEndToEndTests {
    static let secret = "whsec_" + Data((0..<32).map { UInt8(255 - $0) }).base64EncodedString()

    static func stack(_ directory: TemporaryDirectory, allowPrivate: Bool, kind: TransportKind = .embedded) async throws -> InProcessStack {
        var stack = try await EndToEndTests.stack(directory, kind, stepDelay: .milliseconds(20))
        stack.handler.webhookPolicy = OutboundURLPolicy(allowPrivate: allowPrivate)
        stack.configuration.webhookAllowPrivate = allowPrivate
        return stack
    }

    @Test(arguments: TransportKind.available)
    func aLoopbackReceiverGetsExactlyOneVerifiedCompletedDelivery(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory, allowPrivate: true, kind: kind)
        defer { Task { await stack.close() } }
        try await withWebhookReceiver(secret: Self.secret) { receiver in
            let id = try await stack.whileRunning {
                let id = try await EndToEndTests.submit(stack, """
                    {"prompt": "a lighthouse", "steps": 10, "width": 64, "height": 64,
                     "callback": {"url": "\(receiver.url)", "secret": "\(Self.secret)", "events": ["running", "progress", "completed"]}}
                    """)
                let delivered = await eventually(timeout: .seconds(60)) {
                    guard receiver.deliveries().contains(where: { $0.type == "task.completed" }) else { return false }
                    return try await EndToEndTests.record(stack, id)?.webhook?.status == .succeeded
                }
                #expect(delivered)
                try await Task.sleep(for: .milliseconds(500))  // room for a duplicate to show up
                return id
            }
            let deliveries = receiver.deliveries()
            let completed = deliveries.filter { $0.type == "task.completed" }
            #expect(completed.count == 1)
            #expect(completed.first?.verified == true)
            #expect(completed.first?.id == "msg_\(id)_completed")
            #expect(completed.first?.taskStatus == "succeeded")
            #expect(completed.first?.body?["data"]?["images"]?[0]?["seed"] != nil)
            // The optional events came too, signed the same way, before the completion.
            #expect(deliveries.contains { $0.type == "task.running" })
            #expect(deliveries.allSatisfy { $0.verified })
            let response = await stack.handler.handle(APIRequest(method: "GET", path: "/v1/tasks/\(id)"))
            let status = try JSONValue.parse(response.body)
            #expect(status["status"]?.stringValue == "succeeded")
            #expect(status["webhook"]?["status"]?.stringValue == "succeeded")
            #expect(!String(decoding: response.body, as: UTF8.self).contains(Self.secret))
        }
    }

    @Test func theMetadataAddressIsRefusedWhenPrivateDestinationsAreNotAllowed() async throws {
        let directory = TemporaryDirectory()
        let stack = try await Self.stack(directory, allowPrivate: false)
        defer { Task { await stack.close() } }
        let response = await stack.handler.handle(APIRequest(
            method: "POST", path: "/v1/tasks", body: Data(#"{"prompt": "x", "callback": {"url": "http://169.254.169.254/"}}"#.utf8)))
        #expect(response.status == 400)
        let error = try JSONValue.parse(response.body)["error"]
        #expect(error?["field"]?.stringValue == "callback.url")
        #expect(error?["code"]?.stringValue == "callback_refused")
        #expect(try await stack.context.transport.queue(named: stack.context.names.dispatchQueue).depth().visible == 0)
    }
}
