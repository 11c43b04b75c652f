import Foundation
import ResultWriter
import SDQTestSupport
import Testing

/// The Standard Webhooks signature, checked against an independent implementation (Python's
/// hmac and hashlib) of the published scheme.
@Suite struct WebhookSignerTests {
    /// Python's signature of `id.timestamp.body` with the secret's base64-decoded bytes.
    static func pythonSignature(secret: String, id: String, timestamp: Int64, body: Data) async throws -> String {
        let script = """
            import base64, hashlib, hmac, sys
            secret, msg_id, ts = sys.argv[1], sys.argv[2], sys.argv[3]
            body = sys.stdin.buffer.read()
            key = base64.b64decode(secret[len("whsec_"):])
            mac = hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()
            sys.stdout.write("v1," + base64.b64encode(mac).decode())
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, secret, id, String(timestamp)]
        let output = Pipe()
        process.standardInput = Pipe()
        process.standardOutput = output
        // The body and the signature are far smaller than a pipe's buffer: write all, then await the exit.
        try await AWSTestEnvironment.runToExit(process, input: body)
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test(arguments: [
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", Int64(1614265330), #"{"test": 2432232314}"#),
        ("whsec_" + Data((0..<32).map { UInt8($0) }).base64EncodedString(), "01m8fa00000000000000000000", Int64(1_795_810_000), #"{"id":"t","status":"succeeded","images":[]}"#),
    ])
    func signsLikeAnIndependentImplementation(secret: String, id: String, timestamp: Int64, body: String) async throws {
        let signer = try WebhookSigner(secret: secret)
        let ours = signer.signature(id: id, timestamp: timestamp, body: Data(body.utf8))
        let theirs = try await Self.pythonSignature(secret: secret, id: id, timestamp: timestamp, body: Data(body.utf8))
        #expect(ours == theirs)
        #expect(ours.hasPrefix("v1,"))
        // Any change to id, time or body changes the signature.
        #expect(signer.signature(id: id + "x", timestamp: timestamp, body: Data(body.utf8)) != ours)
        #expect(signer.signature(id: id, timestamp: timestamp + 1, body: Data(body.utf8)) != ours)
        #expect(signer.signature(id: id, timestamp: timestamp, body: Data((body + " ").utf8)) != ours)
        let headers = Dictionary(uniqueKeysWithValues: signer.headers(id: id, timestamp: timestamp, body: Data(body.utf8)))
        #expect(headers["webhook-id"] == id && headers["webhook-timestamp"] == String(timestamp) && headers["webhook-signature"] == ours)
    }

    /// The example in the Standard Webhooks specification.
    @Test func matchesThePublishedExample() throws {
        let signer = try WebhookSigner(secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let signature = signer.signature(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Data(#"{"test": 2432232314}"#.utf8))
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test(arguments: ["", "whsec_", "whsec_not base64!", "sk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    func secretsThatAreNotWhsecBase64AreRefused(secret: String) {
        #expect(throws: WebhookSigner.InvalidSecret.self) { _ = try WebhookSigner(secret: secret) }
    }
}
