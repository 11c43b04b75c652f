import AsyncHTTPClient
import Foundation
import NIOCore
import SDQPlatform
import SDQTestSupport
import Testing

/// Quotas hold across API processes: three `api` processes share one task store (the embedded
/// database file, or DynamoDB on moto) and take concurrent submissions of two tenants; exactly the
/// allowed number of each is accepted, however the requests spread over the processes.
@Suite(.serialized) struct QuotaProcessTests {
    static let keyFile = """
        keys:
          - name: bounded
            key: k-bounded
            quotas: {max_in_flight: 4}
          - name: steady
            key: k-steady
            quotas: {submissions_per_minute: 1, burst: 3}
        """

    /// Starts `api` on a free port; returns the process and its base URL once it answers.
    static func startAPI(_ environment: [String: String], in directory: TemporaryDirectory) async throws -> (Process, String) {
        let port = try #require(AWSTestEnvironment.freePort())
        let process = Process()
        process.executableURL = SdqProcess.binary.deletingLastPathComponent().appendingPathComponent("api")
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }.merging([
            "SDQ_HTTP_PORT": String(port), "SDQ_HTTP_HOST": "127.0.0.1",
        ]) { $1 }
        let log = directory.url.appendingPathComponent("api-\(port).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try AWSTestEnvironment.launch(process)
        let base = "http://127.0.0.1:\(port)"
        let up = await eventually(timeout: .seconds(30)) {
            try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/healthz"), timeout: .seconds(2)).status.code == 200
        }
        if !up {
            process.terminate()
            Issue.record("api did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        }
        return (process, base)
    }

    static func submit(_ base: String, key: String, index: Int) async throws -> (status: Int, code: String?) {
        var request = HTTPClientRequest(url: base + "/v1/tasks")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"prompt": "quota \#(index)", "width": 64, "height": 64}"#))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        let code = (try? JSONValue.parse(Data(buffer: body)))?["error"]?["code"]?.stringValue
        return (Int(response.status.code), code)
    }

    @Test(arguments: TransportKind.available)
    func eachLimitHoldsAcrossThreeAPIProcesses(_ kind: TransportKind) async throws {
        let directory = TemporaryDirectory()
        let keys = directory.url.appendingPathComponent("keys.yaml")
        try Self.keyFile.write(to: keys, atomically: true, encoding: .utf8)
        var environment = ["SDQ_API_KEYS_FILE": keys.path, "LOG_LEVEL": "warning", "SDQ_LOG_FORMAT": "text"]
        switch kind {
        case .embedded:
            environment["SDQ_TRANSPORT"] = "embedded"
            environment["SDQ_DATA_DIR"] = directory.url.appendingPathComponent("data").path
        case .aws:
            let fixture = try await StackFixture.make(.aws)  // provisions the stack the processes use
            environment.merge(AWSTestEnvironment.variables()) { $1 }
            environment["SDQ_TRANSPORT"] = "aws"
            environment["SDQ_STACK"] = fixture.names.stack
        }
        var processes: [Process] = []
        var bases: [String] = []
        defer { for process in processes { process.terminate() } }
        for _ in 0..<3 {
            let (process, base) = try await Self.startAPI(environment, in: directory)
            processes.append(process)
            bases.append(base)
        }
        // 12 submissions of each tenant at once, spread round-robin over the three processes.
        let results = try await withThrowingTaskGroup(of: (String, Int, String?).self) { group in
            for index in 0..<24 {
                let key = index % 2 == 0 ? "k-bounded" : "k-steady"
                let base = bases[index % 3]
                group.addTask {
                    let (status, code) = try await Self.submit(base, key: key, index: index)
                    return (key, status, code)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for key in ["k-bounded", "k-steady"] {
            let mine = results.filter { $0.0 == key }
            let accepted = mine.filter { $0.1 == 202 }.count
            let refused = mine.filter { $0.1 == 429 && $0.2 == "quota_exceeded" }.count
            print("\(kind) \(key): \(accepted) accepted, \(refused) refused (429 quota_exceeded) of \(mine.count)")
            #expect(accepted == (key == "k-bounded" ? 4 : 3), "\(key): \(mine.map(\.1))")
            #expect(accepted + refused == mine.count, "\(key): every other answer is a 429: \(mine.map(\.1))")
        }
    }
}
