import ApiLambda
import Foundation
import Logging
import SDQPlatform
import Sdq

/// `bench-gpu-gap --workers 1,2,4,8`: throughput as workers are added, on one machine.
///
/// For each worker count a fresh in-process stack (on AWS: a fresh stack on the emulator) runs
/// `tasks` short tasks submitted at once, and the benchmark prints tasks per second, the CPU
/// seconds per task sdq spent (this process: API, dispatcher, workers, result-writer) and, with
/// `--moto-pid`, those the AWS emulator spent, so the point where the machine — not sdq — is the
/// limit shows.
enum Throughput {
    struct Row {
        var workers: Int
        var succeeded: Int
        var tasks: Int
        var seconds: Double
        var sdqCPU: Double
        var peerCPU: Double?
        /// The span the benchmark waited, its own polling included.
        var polled: Double
    }

    static func run(
        workerCounts: [Int], tasks: Int, steps: Int, stepMilliseconds: Int, awsEndpoint: String?, motoPID: Int32?, logger: Logger
    ) async throws {
        var rows: [Row] = []
        for workers in workerCounts {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sdq-throughput-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let (configuration, environment) = benchSetup(directory: directory, awsEndpoint: awsEndpoint, stackPrefix: "tp")
            let stack = try await InProcessStack.open(
                configuration: configuration, workersPerPool: workers, emulatorStepDelay: .milliseconds(stepMilliseconds),
                receiveWait: .seconds(1), logger: logger, environment: environment)
            if awsEndpoint != nil { try await stack.context.transport.provision(stack.context.topology) }
            let cpuBefore = processCPUSeconds(), peerBefore = motoPID.flatMap(peerCPUSeconds)
            let started = ContinuousClock.now
            let records: [TaskRecord] = try await stack.whileRunning {
                // Sixteen clients submit at once, as a burst of traffic would.
                let ids: [String] = try await withThrowingTaskGroup(of: [String].self) { group in
                    for client in 0..<16 {
                        group.addTask {
                            var ids: [String] = []
                            for index in stride(from: client, to: tasks, by: 16) {
                                let body = #"{"prompt": "throughput \#(index)", "seed": \#(index), "width": 64, "height": 64, "steps": \#(steps)}"#
                                let response = await stack.handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(body.utf8)))
                                guard response.status == 202, let id = (try? JSONValue.parse(response.body))?["id"]?.stringValue else {
                                    throw BenchmarkError("submit answered \(response.status)")
                                }
                                ids.append(id)
                            }
                            return ids
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                return try await terminalRecords(ids, in: stack, every: .milliseconds(200))
            }
            // From the first submission to the last task's end, as the task records say (not
            // this loop's polling).
            let firstSubmitted = records.compactMap(\.timings.submittedAt).min() ?? 0
            let lastFinished = records.compactMap(\.timings.finishedAt).max() ?? 0
            let elapsed = ContinuousClock.now - started
            let polled = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let seconds = lastFinished > firstSubmitted ? Double(lastFinished - firstSubmitted) / 1000 : polled
            let sdqCPU = processCPUSeconds() - cpuBefore
            let peerCPU = peerBefore.flatMap { before in motoPID.flatMap(peerCPUSeconds).map { $0 - before } }
            await stack.close()
            rows.append(Row(
                workers: workers, succeeded: records.filter { $0.status == .succeeded }.count, tasks: tasks, seconds: seconds,
                sdqCPU: sdqCPU, peerCPU: peerCPU, polled: polled))
        }
        let transport = awsEndpoint.map { "AWS transport on \($0)" } ?? "embedded transport (SQLite)"
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("throughput benchmark: \(tasks) tasks of \(steps) steps × \(stepMilliseconds) ms per worker count, \(transport), \(cores) cores")
        print("  workers  succeeded  tasks/s  ideal tasks/s  sdq CPU ms/task  \(motoPID == nil ? "" : "moto CPU ms/task  ")CPU busy")
        let ideal = 1000.0 / Double(max(1, steps * stepMilliseconds))
        for row in rows {
            let perTask = { (cpu: Double) in cpu * 1000 / Double(max(1, row.succeeded)) }
            let busy = (row.sdqCPU + (row.peerCPU ?? 0)) / (row.seconds * Double(cores)) * 100
            var line = String(
                format: "  %7d  %9d  %7.1f  %13.1f  %15.2f  ", row.workers, row.succeeded, Double(row.succeeded) / row.seconds,
                ideal * Double(row.workers), perTask(row.sdqCPU))
            if let peer = row.peerCPU { line += String(format: "%16.2f  ", perTask(peer)) }
            line += String(format: "%5.0f %%", busy)
            print(line)
        }
    }

    /// User plus system CPU seconds of this process.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// User plus system CPU seconds of process `pid` (from `/proc/PID/stat`), nil when unreadable.
    static func peerCPUSeconds(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
