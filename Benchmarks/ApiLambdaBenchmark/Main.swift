import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `bench-api-lambda`: the `api-lambda` bootstrap against a loopback Lambda Runtime API peer.
///
/// Prints, for the binary next to this one (build both with `-c release`):
/// - cold start: process launch → its first `GET …/invocation/next` (median and max of `--starts` launches);
/// - handler time per invocation for submit (`POST /v1/tasks`, an API Gateway 2.0 event) and status
///   (`GET /v1/tasks/{id}`): event handed out → response posted, median and p99;
/// - peak RSS (VmHWM) after `--invocations` invocations.
///
/// Usage: `swift build -c release && .build/release/bench-api-lambda [--invocations 1000] [--starts 5]`.
/// `api-lambda` runs on the AWS transport only: give it one in the environment (`SDQ_TRANSPORT=aws`,
/// `AWS_ENDPOINT_URL` of moto, a `SDQ_STACK` made by `sdq aws init`), as `scripts/bench.sh` does.
@main
struct Main {
    static func main() async throws {
        var invocations = 1000
        var starts = 5
        var binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("api-lambda").path
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let argument = arguments.next() {
            switch argument {
            case "--invocations": invocations = Int(arguments.next() ?? "") ?? invocations
            case "--starts": starts = Int(arguments.next() ?? "") ?? starts
            case "--binary": binary = arguments.next() ?? binary
            default:
                FileHandle.standardError.write(Data("usage: bench-api-lambda [--invocations N] [--starts N] [--binary PATH]\n".utf8))
                exit(2)
            }
        }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            FileHandle.standardError.write(Data("no api-lambda at \(binary); build it first\n".utf8))
            exit(2)
        }
        let peer = RuntimeAPIPeer()
        try await peer.serve { [binary, starts, invocations] endpoint in
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("sdq-bench-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: root) }
            var coldStarts: [Duration] = []
            for index in 0..<starts {
                // Each launch is a fresh execution environment with an empty /tmp, as on Lambda.
                // A function that dies ends the run with its exit status instead of a hang.
                let generation = await peer.launching()
                let process = try launch(binary, endpoint: endpoint, data: root.appendingPathComponent("\(index)")) { status in
                    Task { await peer.exited(generation: generation, status: status) }
                }
                let launched = ContinuousClock.now
                guard let first = await peer.waitForNext() else {
                    FileHandle.standardError.write(Data("benchmark failed: \(await peer.exitDescription) before asking for its first event\n".utf8))
                    exit(1)
                }
                coldStarts.append(launched.duration(to: first))
                if index < starts - 1 {
                    await stop(process)
                    await peer.reset()
                    continue
                }
                let driven: ([Duration], [Duration])
                do { driven = try await drive(peer, invocations: invocations) } catch {
                    await stop(process)
                    FileHandle.standardError.write(Data("benchmark failed: \(error)\n".utf8))
                    exit(1)
                }
                let (submit, status) = driven
                let memory = peakRSS(process.processIdentifier)
                // SDQ_BENCH_HOLD_SECONDS: keep the driven process alive (its pid on stderr) so its
                // resident pages can be inspected, e.g. with scripts/resident-pages.py.
                if let hold = ProcessInfo.processInfo.environment["SDQ_BENCH_HOLD_SECONDS"].flatMap(Int.init), hold > 0 {
                    FileHandle.standardError.write(Data("holding api-lambda pid \(process.processIdentifier) for \(hold) s\n".utf8))
                    try? await Task.sleep(for: .seconds(hold))
                }
                await stop(process)
                await peer.reset()  // the killed process's last `next` ends, so the server can stop
                report(binary: binary, coldStarts: coldStarts, submit: submit, status: status, memory: memory, invocations: invocations)
                fflush(nil)
            }
        }
    }

    /// Kills `process` (as Lambda ends an environment) and waits for it without blocking a
    /// concurrency thread.
    static func stop(_ process: Process) async {
        kill(process.processIdentifier, SIGKILL)
        while process.isRunning { try? await Task.sleep(for: .milliseconds(5)) }
    }

    static func launch(
        _ binary: String, endpoint: String, data: URL, onExit: @escaping @Sendable (Int32) -> Void
    ) throws -> Process {
        let process = Process()
        process.terminationHandler = { onExit($0.terminationStatus) }
        process.executableURL = URL(fileURLWithPath: binary)
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_LAMBDA_RUNTIME_API"] = endpoint
        environment["SDQ_DATA_DIR"] = environment["SDQ_DATA_DIR"] ?? data.path
        environment["LOG_LEVEL"] = environment["LOG_LEVEL"] ?? "error"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Alternates submit and status invocations; returns their handler times.
    static func drive(_ peer: RuntimeAPIPeer, invocations: Int) async throws -> ([Duration], [Duration]) {
        var submits: [Duration] = []
        var statuses: [Duration] = []
        var lastID = "01m8fa00000000000000000000"
        for index in 0..<invocations {
            if index % 2 == 0 {
                let body = #"{"prompt":"benchmark \#(index)","seed":\#(index),"width":512,"height":512,"steps":20}"#
                let event: [String: Any] = [
                    "version": "2.0", "rawPath": "/v1/tasks", "rawQueryString": "",
                    "headers": ["content-type": "application/json", "host": "bench.local"],
                    "requestContext": ["http": ["method": "POST", "path": "/v1/tasks"]], "body": body, "isBase64Encoded": false,
                ]
                guard let (elapsed, answer) = await peer.invoke(try JSONSerialization.data(withJSONObject: event)) else {
                    throw BenchmarkError("\(await peer.exitDescription) during invocation \(index)")
                }
                submits.append(elapsed)
                let outer = try JSONSerialization.jsonObject(with: answer) as? [String: Any]
                guard outer?["statusCode"] as? Int == 202, let text = outer?["body"] as? String,
                    let document = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                    let id = document["id"] as? String
                else { throw BenchmarkError("submit answered \(String(decoding: answer, as: UTF8.self))") }
                lastID = id
            } else {
                let event: [String: Any] = [
                    "version": "2.0", "rawPath": "/v1/tasks/\(lastID)", "rawQueryString": "", "headers": ["host": "bench.local"],
                    "requestContext": ["http": ["method": "GET", "path": "/v1/tasks/\(lastID)"]], "isBase64Encoded": false,
                ]
                guard let (elapsed, answer) = await peer.invoke(try JSONSerialization.data(withJSONObject: event)) else {
                    throw BenchmarkError("\(await peer.exitDescription) during invocation \(index)")
                }
                statuses.append(elapsed)
                let outer = try JSONSerialization.jsonObject(with: answer) as? [String: Any]
                guard outer?["statusCode"] as? Int == 200 else {
                    throw BenchmarkError("status answered \(String(decoding: answer, as: UTF8.self))")
                }
            }
        }
        return (submits, statuses)
    }

    /// VmHWM and VmRSS of `pid` in KiB (Linux).
    static func peakRSS(_ pid: Int32) -> (peak: Int, current: Int) {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            let line = text.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        return (field("VmHWM"), field("VmRSS"))
    }

    static func report(
        binary: String, coldStarts: [Duration], submit: [Duration], status: [Duration], memory: (peak: Int, current: Int), invocations: Int
    ) {
        func ms(_ d: Duration) -> String { String(format: "%.2f ms", Double(d.components.attoseconds) / 1e15 + Double(d.components.seconds) * 1000) }
        func quantile(_ values: [Duration], _ q: Double) -> Duration {
            let sorted = values.sorted()
            return sorted.isEmpty ? .zero : sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
        }
        print("api-lambda benchmark (\(binary))")
        print("  cold start, launch → first next:   median \(ms(quantile(coldStarts, 0.5)))  max \(ms(coldStarts.max() ?? .zero))  (\(coldStarts.count) launches; goal < 15 ms)")
        print("  submit handler time:               median \(ms(quantile(submit, 0.5)))  p99 \(ms(quantile(submit, 0.99)))  (\(submit.count) invocations)")
        print("  status handler time:               median \(ms(quantile(status, 0.5)))  p99 \(ms(quantile(status, 0.99)))  (\(status.count) invocations)")
        let peakMiB = String(format: "%.1f", Double(memory.peak) / 1024)
        let peakMB = String(format: "%.1f", Double(memory.peak) * 1024 / 1e6)
        print("  peak RSS after \(invocations) invocations:  \(peakMiB) MiB = \(peakMB) MB (\(memory.peak) KiB; now \(memory.current) KiB; goal < 25 MB)")
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A loopback Lambda Runtime API peer: hands out one event per `next`, times each invocation from
/// the moment its event is handed out to the moment its response is posted.
actor RuntimeAPIPeer {
    private var waitingNext: CheckedContinuation<(String, Data), Never>?
    private var pending: [(String, Data)] = []
    private var nextArrivals: [ContinuousClock.Instant] = []
    private var arrivalWaiter: CheckedContinuation<ContinuousClock.Instant?, Never>?
    private var handedOut: [String: ContinuousClock.Instant] = [:]
    private var responseWaiters: [String: CheckedContinuation<(Duration, Data)?, Never>] = [:]
    private var counter = 0
    private var generation = 0
    private var exitStatus: Int32?

    /// A new function process is about to start; its exit counts from now (a stopped one's not).
    func launching() -> Int {
        generation += 1
        exitStatus = nil
        return generation
    }

    /// The function process of `generation` ended: whatever waits on it gets nil.
    func exited(generation: Int, status: Int32) {
        guard generation == self.generation else { return }
        exitStatus = status
        arrivalWaiter?.resume(returning: nil)
        arrivalWaiter = nil
        for waiter in responseWaiters.values { waiter.resume(returning: nil) }
        responseWaiters.removeAll()
    }

    var exitDescription: String { "api-lambda exited with status \(exitStatus.map(String.init) ?? "?")" }

    /// Serves on a free loopback port while `body` runs with the `host:port` endpoint.
    nonisolated func serve(_ body: @escaping @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.get("/2018-06-01/runtime/invocation/next") { _, _ -> Response in
            let (id, payload) = await self.next()
            var headers = HTTPFields()
            headers[HTTPField.Name("Lambda-Runtime-Aws-Request-Id")!] = id
            headers[HTTPField.Name("Lambda-Runtime-Deadline-Ms")!] = String(Int64(Date().timeIntervalSince1970 * 1000) + 30_000)
            headers[HTTPField.Name("Lambda-Runtime-Invoked-Function-Arn")!] = "arn:aws:lambda:us-east-1:123456789012:function:bench"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: payload)))
        }
        router.post("/2018-06-01/runtime/init/error") { request, _ -> Response in
            var request = request
            let body = Data((try await request.collectBody(upTo: 1 << 20)).readableBytesView)
            FileHandle.standardError.write(Data("api-lambda failed to start: \(String(decoding: body, as: UTF8.self))\n".utf8))
            exit(1)
        }
        router.post("/2018-06-01/runtime/invocation/{id}/{kind}") { request, context -> Response in
            var request = request
            let body = Data((try await request.collectBody(upTo: 16 << 20)).readableBytesView)
            await self.posted(id: context.parameters.get("id") ?? "", body: body)
            return Response(status: .accepted)
        }
        var logger = Logger(label: "bench-peer")
        logger.logLevel = .critical
        let port = PortSignal()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { await port.set($0.localAddress?.port ?? 0) }, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            try await body("127.0.0.1:\(await port.wait())")
            group.cancelAll()
        }
    }

    private func next() async -> (String, Data) {
        let now = ContinuousClock.now
        if let waiter = arrivalWaiter {
            arrivalWaiter = nil
            waiter.resume(returning: now)
        } else {
            nextArrivals.append(now)
        }
        if !pending.isEmpty {
            let event = pending.removeFirst()
            handedOut[event.0] = .now
            return event
        }
        return await withCheckedContinuation { waitingNext = $0 }
    }

    /// The time of the first `next` since the last reset; nil when the process exited first.
    func waitForNext() async -> ContinuousClock.Instant? {
        if !nextArrivals.isEmpty { return nextArrivals.removeFirst() }
        if exitStatus != nil { return nil }
        return await withCheckedContinuation { arrivalWaiter = $0 }
    }

    /// Ends a killed process's pending `next` (its connection is gone) so nothing hangs on it.
    func reset() {
        waitingNext?.resume(returning: ("gone", Data()))
        waitingNext = nil
        nextArrivals.removeAll()
    }

    /// Hands `payload` to the function and waits for its response; nil when the process exited.
    func invoke(_ payload: Data) async -> (Duration, Data)? {
        if exitStatus != nil { return nil }
        counter += 1
        let id = "bench-\(counter)"
        return await withCheckedContinuation { continuation in
            responseWaiters[id] = continuation
            if let waiter = waitingNext {
                waitingNext = nil
                handedOut[id] = .now
                waiter.resume(returning: (id, payload))
            } else {
                pending.append((id, payload))
            }
        }
    }

    private func posted(id: String, body: Data) {
        let elapsed = handedOut.removeValue(forKey: id).map { $0.duration(to: .now) } ?? .zero
        responseWaiters.removeValue(forKey: id)?.resume(returning: (elapsed, body))
    }
}

actor PortSignal {
    private var port: Int?
    private var waiters: [CheckedContinuation<Int, Never>] = []
    func set(_ value: Int) {
        port = value
        waiters.forEach { $0.resume(returning: value) }
        waiters.removeAll()
    }
    func wait() async -> Int {
        if let port { return port }
        return await withCheckedContinuation { waiters.append($0) }
    }
}
