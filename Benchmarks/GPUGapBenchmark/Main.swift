import ApiLambda
import Foundation
import Logging
import SDQPlatform
import Sdq

/// `bench-gpu-gap`: how long the GPU waits between tasks on one worker.
///
/// Runs the whole pipeline in-process (the services `sdq up` runs) with one worker at a fixed step
/// time, submits `--tasks` tasks at once and waits for all. The runtime is a peer that is not
/// sdq's code (`--runtime sdwebui`, the default, runs `scripts/sdwebui_peer.py`; `comfyui` runs
/// `scripts/comfyui_peer.py`), and the figures are the peer's own: the gap between one
/// generation's end and the next one's start as it logged them (median, p99, max), the overhead
/// (busy span over generating time, minus 1), and how closely sdq's runtime windows agree with
/// the peer's. sdq's own figures from the task records follow, labelled. `--runtime emulator`
/// runs the in-process emulator instead (sdq's own figures only). The transport is the embedded
/// one; `--aws ENDPOINT` runs it on an AWS emulator (moto) instead.
///
/// `--idle N` measures instead the latency sdq adds at idle: N tasks one after the other on the
/// idle stack, each from submission to the runtime's start (`runtime_started_at − submitted_at`).
///
/// `--workers 1,2,4,8` measures instead throughput as workers are added (``Throughput``);
/// `--moto-pid PID` adds the AWS emulator's CPU seconds per task.
///
/// `scripts/bench-runtime-gap.sh` measures the same through `sdq up` over HTTP.
///
/// Usage: `swift build -c release --product bench-gpu-gap && .build/release/bench-gpu-gap [--tasks 200] [--steps 20] [--step-ms 10] [--runtime sdwebui|comfyui|emulator] [--scripts DIR] [--idle N] [--workers 1,2,4,8 [--moto-pid PID]] [--aws http://127.0.0.1:5000]`
/// (from the repository root, where `scripts/` holds the peers)
@main
struct Main {
    static func main() async throws {
        var tasks = 200, steps = 20, stepMilliseconds = 10
        var awsEndpoint: String?
        var idle = 0
        var workerCounts: [Int] = []
        var motoPID: Int32?
        var runtime = "sdwebui"
        var scripts = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("scripts")
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let argument = arguments.next() {
            switch argument {
            case "--tasks": tasks = Int(arguments.next() ?? "") ?? tasks
            case "--steps": steps = Int(arguments.next() ?? "") ?? steps
            case "--step-ms": stepMilliseconds = Int(arguments.next() ?? "") ?? stepMilliseconds
            case "--aws": awsEndpoint = arguments.next()
            case "--idle": idle = Int(arguments.next() ?? "") ?? idle
            case "--workers": workerCounts = (arguments.next() ?? "").split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
            case "--moto-pid": motoPID = Int32(arguments.next() ?? "")
            case "--runtime": runtime = arguments.next() ?? runtime
            case "--scripts": scripts = URL(fileURLWithPath: arguments.next() ?? scripts.path)
            default:
                FileHandle.standardError.write(Data("usage: bench-gpu-gap [--tasks N] [--steps N] [--step-ms N] [--runtime sdwebui|comfyui|emulator] [--scripts DIR] [--idle N] [--workers N,N,... [--moto-pid PID]] [--aws ENDPOINT]\n".utf8))
                exit(2)
            }
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        if !workerCounts.isEmpty {
            try await Throughput.run(
                workerCounts: workerCounts, tasks: tasks, steps: steps, stepMilliseconds: stepMilliseconds, awsEndpoint: awsEndpoint,
                motoPID: motoPID, logger: logger)
            return
        }
        guard ["sdwebui", "comfyui", "emulator"].contains(runtime) else { throw BenchmarkError("--runtime is sdwebui, comfyui or emulator") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sdq-gap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var (configuration, environment) = benchSetup(directory: directory, awsEndpoint: awsEndpoint, stackPrefix: "gap")
        // Idle latency and throughput stay on the in-process emulator; the gap runs on a peer.
        let peer = runtime == "emulator" || idle > 0
            ? nil : try await RuntimePeer.start(kind: runtime, stepMilliseconds: stepMilliseconds, scriptsDirectory: scripts, workDirectory: directory)
        defer { peer?.stop() }
        if let peer {
            configuration.runtime = peer.kind
            configuration.runtimeURL = peer.url
        }
        let stack = try await InProcessStack.open(
            configuration: configuration, workersPerPool: 1, emulatorStepDelay: .milliseconds(stepMilliseconds),
            receiveWait: .seconds(1), logger: logger, environment: environment)
        if awsEndpoint != nil { try await stack.context.transport.provision(stack.context.topology) }
        let transport = awsEndpoint.map { "aws (\($0))" } ?? "embedded"
        if idle > 0 {
            try await idleLatency(stack, tasks: idle, steps: steps, transport: transport)
            await stack.close()
            return
        }

        var ids: [String] = []
        for index in 0..<tasks {
            var body = #"{"prompt": "gap \#(index)", "seed": \#(index), "width": 64, "height": 64, "steps": \#(steps)}"#
            if runtime == "comfyui" {
                body = #"{"kind": "comfyui_workflow", "prompt": "", "workflow": \#(RuntimePeer.comfyWorkflow(seed: index, steps: steps))}"#
            }
            let response = await stack.handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(body.utf8)))
            guard response.status == 202, let id = (try? JSONValue.parse(response.body))?["id"]?.stringValue else {
                throw BenchmarkError("submit answered \(response.status)")
            }
            ids.append(id)
        }
        let started = ContinuousClock.now
        let records = try await stack.whileRunning { [ids] in try await terminalRecords(ids, in: stack, every: .milliseconds(100)) }
        let wall = ContinuousClock.now - started
        await stack.close()
        let runtimeName = peer.map { "the \($0.kind) peer" } ?? "the in-process emulator"
        print("GPU gap benchmark: \(records.count) tasks, one worker, \(runtimeName) at \(steps) steps × \(stepMilliseconds) ms, \(transport)")
        if let peer { reportPeer(try peer.generations(), records: records, peer: peer) }
        report(records, wall: wall, own: peer != nil)
    }

    /// Submits `tasks` tasks one at a time on the idle stack; prints submission → runtime start.
    static func idleLatency(_ stack: InProcessStack, tasks: Int, steps: Int, transport: String) async throws {
        let latencies: [Double] = try await stack.whileRunning {
            var latencies: [Double] = []
            for index in 0..<tasks {
                let body = #"{"prompt": "idle \#(index)", "seed": \#(index), "width": 64, "height": 64, "steps": \#(steps)}"#
                let response = await stack.handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(body.utf8)))
                guard response.status == 202, let id = (try? JSONValue.parse(response.body))?["id"]?.stringValue else {
                    throw BenchmarkError("submit answered \(response.status)")
                }
                while true {
                    if let record = try await stack.context.transport.tasks.get(id: id), record.status.isTerminal {
                        if let start = record.timings.runtimeStartedAt, let submitted = record.timings.submittedAt {
                            latencies.append(Double(start - submitted))
                        }
                        break
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                try await Task.sleep(for: .milliseconds(300))  // idle again: workers back in their long poll
            }
            return latencies.sorted()
        }
        func quantile(_ q: Double) -> Double { Self.quantile(latencies, q) }
        print("idle latency benchmark: \(tasks) tasks one at a time, \(transport)")
        print(String(format: "  submission → runtime start (ms): median %.1f  p99 %.1f  max %.1f", quantile(0.5), quantile(0.99), latencies.last ?? 0))
    }

    /// The `q` quantile of sorted values (nearest rank); 0 when empty.
    static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
    }

    /// sdq's own figures, from the task records' runtime windows.
    static func report(_ records: [TaskRecord], wall: Duration, own: Bool) {
        let succeeded = records.filter { $0.status == .succeeded }
        let runs = succeeded.compactMap { record -> (start: Int64, end: Int64)? in
            guard let start = record.timings.runtimeStartedAt, let end = record.timings.runtimeFinishedAt else { return nil }
            return (start, end)
        }.sorted { $0.start < $1.start }
        let gaps = zip(runs, runs.dropFirst()).map { Double($1.start - $0.end) }.sorted()
        func quantile(_ q: Double) -> Double { Self.quantile(gaps, q) }
        let runtimeTotal = runs.reduce(0.0) { $0 + Double($1.end - $1.start) }
        let firstStart = runs.first?.start ?? 0, lastEnd = runs.last?.end ?? 0
        let busySpan = Double(lastEnd - firstStart)
        let wallMs = Double(wall.components.seconds) * 1000 + Double(wall.components.attoseconds) / 1e15
        print(own ? "  in sdq's own figures (its status documents' runtime windows):" : "  sdq's own figures (the in-process emulator keeps no log of its own):")
        print("    succeeded: \(succeeded.count) of \(records.count)")
        print(String(format: "    idle gap between tasks (ms): median %.1f  p99 %.1f  max %.1f", quantile(0.5), quantile(0.99), gaps.last ?? 0))
        print(String(format: "    runtime time per task: %.1f ms; first start → last finish per task: %.1f ms", runtimeTotal / Double(max(1, runs.count)), busySpan / Double(max(1, runs.count))))
        print(String(format: "    overhead ratio (busy span / runtime time − 1): %.4f  (%.2f%%)", busySpan / max(1, runtimeTotal) - 1, (busySpan / max(1, runtimeTotal) - 1) * 100))
        print(String(format: "    wall time for all tasks: %.0f ms", wallMs))
    }
}

/// The configuration and environment of a benchmark stack in `directory`: the embedded transport,
/// or with `awsEndpoint` a fresh stack (`<stackPrefix><random>`) on that AWS emulator.
func benchSetup(directory: URL, awsEndpoint: String?, stackPrefix: String) -> (SDQConfiguration, [String: String]) {
    var configuration = SDQConfiguration()
    configuration.dataDirectory = directory.path
    var environment = ProcessInfo.processInfo.environment
    if let awsEndpoint {
        configuration.transport = .aws
        configuration.stack = "\(stackPrefix)\(UInt32.random(in: 0...UInt32.max))"
        environment["AWS_ENDPOINT_URL"] = awsEndpoint
        environment["AWS_REGION"] = environment["AWS_REGION"] ?? "us-east-1"
        environment["AWS_ACCESS_KEY_ID"] = environment["AWS_ACCESS_KEY_ID"] ?? "bench"
        environment["AWS_SECRET_ACCESS_KEY"] = environment["AWS_SECRET_ACCESS_KEY"] ?? "bench"
    }
    return (configuration, environment)
}

/// The records of `ids` once every one has ended, looked at every `interval`.
func terminalRecords(_ ids: [String], in stack: InProcessStack, every interval: Duration) async throws -> [TaskRecord] {
    while true {
        var done: [TaskRecord] = []
        for id in ids {
            guard let record = try await stack.context.transport.tasks.get(id: id), record.status.isTerminal else { break }
            done.append(record)
        }
        if done.count == ids.count { return done }
        try await Task.sleep(for: interval)
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
