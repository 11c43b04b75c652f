import Foundation
import SDQPlatform

/// A Python test server from `Tests/Support` (`webhook_receiver.py`, `otlp_receiver.py`): started
/// on a free loopback port it writes to a file, it logs one JSON object per line to another.
public final class LoopbackPythonServer: @unchecked Sendable {
    /// `http://127.0.0.1:PORT`.
    public let baseURL: String
    let process: Process
    let log: URL
    let directory: TemporaryDirectory

    private init(baseURL: String, process: Process, log: URL, directory: TemporaryDirectory) {
        self.baseURL = baseURL
        self.process = process
        self.log = log
        self.directory = directory
    }

    /// Starts `script` with `PORT_FILE LOG_FILE` and then `arguments`.
    public static func start(script: String, arguments: [String] = []) async throws -> LoopbackPythonServer {
        let directory = TemporaryDirectory()
        let portFile = directory.url.appendingPathComponent("port")
        let log = directory.url.appendingPathComponent("log.jsonl")
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(script)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", path.path, portFile.path, log.path] + arguments
        try AWSTestEnvironment.launch(process)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text) {
                return LoopbackPythonServer(baseURL: "http://127.0.0.1:\(port)", process: process, log: log, directory: directory)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(process.processIdentifier, SIGKILL)
        throw CancellationError()
    }

    /// Every logged line, decoded as `T`, in order.
    public func entries<T: Decodable>(_ type: T.Type = T.self) -> [T] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(T.self, from: Data($0.utf8)) }
    }

    /// Stops the server process.
    public func stop() {
        // SIGKILL: the test process may run with SIGTERM blocked, which its children inherit.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// A webhook receiver for the tests (`webhook_receiver.py`): it verifies Standard Webhooks
/// signatures with Python's hmac, independently of sdq's signer, and answers with a scripted
/// sequence of statuses.
public final class WebhookReceiver: Sendable {
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

    let server: LoopbackPythonServer
    /// The URL to name as the callback.
    public var url: String { server.baseURL + "/hooks/sdq" }

    private init(server: LoopbackPythonServer) { self.server = server }

    /// Starts a receiver; `responses` are answered in turn (the last repeats).
    public static func start(secret: String?, responses: [Int] = [200], delayMilliseconds: Int = 0) async throws -> WebhookReceiver {
        var arguments = ["--responses", responses.map(String.init).joined(separator: ",")]
        if let secret { arguments += ["--secret", secret] }
        if delayMilliseconds > 0 { arguments += ["--delay-ms", String(delayMilliseconds)] }
        return WebhookReceiver(server: try await LoopbackPythonServer.start(script: "webhook_receiver.py", arguments: arguments))
    }

    /// Every delivery so far, in arrival order.
    public func deliveries() -> [Delivery] { server.entries() }

    /// Stops the receiver process.
    public func stop() { server.stop() }
}

/// Runs `body` with a receiver, stopping it afterwards.
public func withWebhookReceiver<T>(
    secret: String?, responses: [Int] = [200], delayMilliseconds: Int = 0, _ body: (WebhookReceiver) async throws -> T
) async throws -> T {
    let receiver = try await WebhookReceiver.start(secret: secret, responses: responses, delayMilliseconds: delayMilliseconds)
    defer { receiver.stop() }
    return try await body(receiver)
}
