import Foundation
import SDQPlatform

/// A webhook receiver for the tests, run as a separate process (`webhook_receiver.py`): it
/// verifies Standard Webhooks signatures with Python's hmac, independently of sdq's signer, and
/// answers with a scripted sequence of statuses.
public final class WebhookReceiver: @unchecked Sendable {
    /// One delivery as the receiver saw it.
    public struct Delivery: Decodable, Sendable {
        public var id: String?
        public var timestamp: String?
        public var signature: String?
        /// The signature verified with the secret, and the timestamp is within five minutes.
        public var verified: Bool
        /// The status the receiver answered.
        public var status: Int
        public var host: String?
        public var path: String
        public var body: JSONValue?

        /// `type` of the body (`task.completed`, …).
        public var type: String? { body?["type"]?.stringValue }
        /// `data.status` of the body.
        public var taskStatus: String? { body?["data"]?["status"]?.stringValue }
    }

    /// The URL to name as the callback.
    public let url: String
    let process: Process
    let log: URL
    let directory: TemporaryDirectory

    private init(url: String, process: Process, log: URL, directory: TemporaryDirectory) {
        self.url = url
        self.process = process
        self.log = log
        self.directory = directory
    }

    /// Starts a receiver; `responses` are answered in turn (the last repeats).
    public static func start(secret: String?, responses: [Int] = [200], delayMilliseconds: Int = 0) async throws -> WebhookReceiver {
        let directory = TemporaryDirectory()
        let portFile = URL(fileURLWithPath: directory.path).appendingPathComponent("port")
        let log = URL(fileURLWithPath: directory.path).appendingPathComponent("deliveries.jsonl")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("webhook_receiver.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        var arguments = ["python3", script.path, portFile.path, log.path, "--responses", responses.map(String.init).joined(separator: ",")]
        if let secret { arguments += ["--secret", secret] }
        if delayMilliseconds > 0 { arguments += ["--delay-ms", String(delayMilliseconds)] }
        process.arguments = arguments
        try AWSTestEnvironment.launch(process)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text) {
                return WebhookReceiver(url: "http://127.0.0.1:\(port)/hooks/sdq", process: process, log: log, directory: directory)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(process.processIdentifier, SIGKILL)
        throw CancellationError()
    }

    /// Every delivery so far, in arrival order.
    public func deliveries() -> [Delivery] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Delivery.self, from: Data($0.utf8)) }
    }

    /// Stops the receiver process.
    public func stop() {
        // SIGKILL: the test process may run with SIGTERM blocked, which its children inherit.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Runs `body` with a receiver, stopping it afterwards.
public func withWebhookReceiver<T>(
    secret: String?, responses: [Int] = [200], delayMilliseconds: Int = 0, _ body: (WebhookReceiver) async throws -> T
) async throws -> T {
    let receiver = try await WebhookReceiver.start(secret: secret, responses: responses, delayMilliseconds: delayMilliseconds)
    defer { receiver.stop() }
    return try await body(receiver)
}
