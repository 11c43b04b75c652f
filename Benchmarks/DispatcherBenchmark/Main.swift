import Dispatcher
import Foundation
import Logging
import SDQMessages
import SDQPlatform
import SDQStack

/// `bench-dispatcher`: dispatcher throughput. Records `--tasks` queued tasks and puts their
/// dispatch messages on the dispatch queue, then runs one dispatcher until every task is
/// `dispatched` and prints tasks per second (run it under `taskset -c 0` for "one core"). The
/// transport is the embedded one; `--aws ENDPOINT` uses an AWS emulator (moto) instead.
///
/// Usage: `swift build -c release --product bench-dispatcher && taskset -c 0 .build/release/bench-dispatcher [--tasks 2000] [--aws http://127.0.0.1:5000] [--only on|off]`
@main
struct Main {
    static func main() async throws {
        var tasks = 2000
        var awsEndpoint: String?
        var only: String?
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let argument = arguments.next() {
            switch argument {
            case "--tasks": tasks = Int(arguments.next() ?? "") ?? tasks
            case "--aws": awsEndpoint = arguments.next()
            case "--only": only = arguments.next()
            default:
                FileHandle.standardError.write(Data("usage: bench-dispatcher [--tasks N] [--aws ENDPOINT] [--only on|off]\n".utf8))
                exit(2)
            }
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        print("dispatcher benchmark: \(tasks) tasks, \(awsEndpoint == nil ? "embedded" : "aws (\(awsEndpoint!))")")
        // Fair share off (every task straight to its lane), then on with lanes that never fill
        // (every task held, then fed): what holding costs when nothing has to wait.
        var rates: [Double] = []
        for (label, fairShare) in [("fair share off", FairShareSettings(laneDepth: 0)),
                                   ("fair share on (held, then fed)", FairShareSettings(laneDepth: tasks + 10, hold: 10_000))]
            where only == nil || (only == "on") == fairShare.isEnabled {
            let seconds = try await run(tasks: tasks, awsEndpoint: awsEndpoint, fairShare: fairShare, logger: logger)
            rates.append(Double(tasks) / seconds)
            print(String(format: "  %@: routed in %.2f s: %.0f tasks/s (includes up to 0.2 s of polling for the end)", label, seconds, rates.last!))
        }
        if rates.count == 2 { print(String(format: "  on/off throughput ratio: %.2f", rates[1] / rates[0])) }
    }

    /// Seconds one dispatcher takes to route `tasks` queued tasks on a fresh stack.
    static func run(tasks: Int, awsEndpoint: String?, fairShare: FairShareSettings, logger: Logger) async throws -> Double {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sdq-dispatch-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = SDQConfiguration()
        configuration.dataDirectory = directory.path
        var environment = ProcessInfo.processInfo.environment
        if let awsEndpoint {
            configuration.transport = .aws
            configuration.stack = "dsp\(UInt32.random(in: 0...UInt32.max))"
            environment["AWS_ENDPOINT_URL"] = awsEndpoint
            environment["AWS_REGION"] = environment["AWS_REGION"] ?? "us-east-1"
            environment["AWS_ACCESS_KEY_ID"] = environment["AWS_ACCESS_KEY_ID"] ?? "bench"
            environment["AWS_SECRET_ACCESS_KEY"] = environment["AWS_SECRET_ACCESS_KEY"] ?? "bench"
        }
        let opened = try await StackContext.open(configuration, logger: logger, environment: environment)
        var pools = opened.pools
        pools.fairShare = fairShare
        let context = StackContext(transport: opened.transport, names: opened.names, pools: pools)
        if awsEndpoint != nil { try await context.transport.provision(context.topology) }
        let now = EpochClock.nowMillis()
        let dispatchQueue = context.transport.queue(named: context.names.dispatchQueue)
        var ids: [String] = []
        for index in 0..<tasks {
            let id = TaskID.generate(now: now)
            _ = try await context.transport.tasks.create(TaskRecord(
                id: id, pool: "default", model: PoolConfiguration.emulatorModel, seed: Int64(index), width: 64, height: 64,
                timings: TaskTimings(submittedAt: now), expiresAt: now + 3_600_000))
            var task = Sdq_V1_GenerationTask()
            task.id = id
            task.parameters.prompt = "dispatch \(index)"
            let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: id])
            try await dispatchQueue.send(body: encoded.body, attributes: encoded.attributes)
            ids.append(id)
        }
        let dispatcher = Dispatcher(context: context, logger: logger, receiveWait: .seconds(1))
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await dispatcher.run() }
            while true {
                try await Task.sleep(for: .milliseconds(200))
                if try await dispatchQueue.depth() == QueueDepth(visible: 0, inFlight: 0) {
                    var done = 0
                    for id in ids where try await context.transport.tasks.get(id: id)?.status == .dispatched { done += 1 }
                    if done == ids.count { break }
                }
            }
            group.cancelAll()
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if let embedded = context.transport as? EmbeddedTransport { await embedded.close() }
        return seconds
    }
}
