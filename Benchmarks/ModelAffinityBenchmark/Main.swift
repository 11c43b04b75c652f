import ApiLambda
import Dispatcher
import Foundation
import InferenceService
import Logging
import ResultWriter
import SDQPlatform
import SDQStack
import ServiceLifecycle

/// `bench-model-affinity`: model switches and download bytes per 1,000 tasks with routing that
/// follows the model cache (affinity on) against routing by load alone (off), one run each on
/// the same task sequence, on the embedded transport with emulator workers.
///
/// The mix: 30 checkpoints and 200 LoRAs of one family, chosen by Zipf (s = 1); half the tasks
/// apply one or two LoRAs. Files are scaled 1:1000 (checkpoints 2 to 7 MB for 2 to 7 GB, LoRAs
/// 20 to 200 kB for 20 to 200 MB), and so are the caches (`--cache-mb`, per worker) and the
/// emulator's load speed (`--load-mbps`, the time a switch takes grows with the file).
/// Each pool has one worker (one GPU). Switches are counted by the emulator runtimes (a load of a
/// checkpoint other than the one loaded, the first load included); download bytes by the object
/// store the caches read from.
///
/// Usage: `swift build -c release --product bench-model-affinity && .build/release/bench-model-affinity [--tasks 1000] [--pools 4] [--rate 40] [--cache-mb 60] [--load-mbps 100] [--only on|off]`
@main
struct Main {
    struct Options {
        var tasks = 1000
        var pools = 4
        var rate = 40.0
        var cacheMB = 60.0
        var loadMBps = 100.0
        var only: String?
    }

    static func main() async throws {
        var options = Options()
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let argument = arguments.next() {
            switch argument {
            case "--tasks": options.tasks = Int(arguments.next() ?? "") ?? options.tasks
            case "--pools": options.pools = Int(arguments.next() ?? "") ?? options.pools
            case "--rate": options.rate = Double(arguments.next() ?? "") ?? options.rate
            case "--cache-mb": options.cacheMB = Double(arguments.next() ?? "") ?? options.cacheMB
            case "--load-mbps": options.loadMBps = Double(arguments.next() ?? "") ?? options.loadMBps
            case "--only": options.only = arguments.next()
            default:
                FileHandle.standardError.write(Data("usage: bench-model-affinity [--tasks N] [--pools N] [--rate TASKS/S] [--cache-mb MB] [--load-mbps MB/S] [--only on|off]\n".utf8))
                exit(2)
            }
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let mix = Mix(tasks: options.tasks)
        say("model affinity benchmark: \(options.tasks) tasks at \(Int(options.rate))/s over \(options.pools) pools of one emulator worker")
        say(String(format: "  mix: Zipf(1) over %d checkpoints (%.1f GB at full size) and %d LoRAs; cache %.0f MB per worker (%.0f GB at full size)",
                     mix.checkpoints.count, Double(mix.checkpoints.reduce(0) { $0 + $1.count }) / 1e6, mix.loras.count, options.cacheMB, options.cacheMB))
        var runs: [(String, Run)] = []
        for affinity in [true, false] where options.only == nil || (options.only == "on") == affinity {
            let run = try await Self.run(mix, affinity: affinity, options: options, logger: logger)
            runs.append((affinity ? "on" : "off", run))
            say(run.describe(label: affinity ? "affinity on " : "affinity off", tasks: options.tasks))
        }
        if runs.count == 2 {
            let (on, off) = (runs[0].1, runs[1].1)
            say(String(format: "  on/off: switches %.2f, download bytes %.2f, mean latency %.2f", Double(on.switches) / Double(max(1, off.switches)),
                         Double(on.downloadBytes) / Double(max(1, off.downloadBytes)), on.meanLatency / max(1, off.meanLatency)))
        }
    }

    /// The files and the task sequence, the same for every run.
    struct Mix {
        var checkpoints: [Data] = []
        var loras: [Data] = []
        /// Per task: a checkpoint index and LoRA indices.
        var sequence: [(checkpoint: Int, loras: [Int])] = []

        init(tasks: Int) {
            var random = SplitMix(seed: 21)
            for index in 0..<30 { checkpoints.append(Self.file(bytes: 2_000_000 + Int(random.next() % 5_000_000), tag: "ckpt-\(index)")) }
            for index in 0..<200 { loras.append(Self.file(bytes: 20_000 + Int(random.next() % 180_000), tag: "lora-\(index)")) }
            let checkpointPick = Zipf(count: checkpoints.count), loraPick = Zipf(count: loras.count)
            for _ in 0..<tasks {
                let checkpoint = checkpointPick.sample(&random)
                var chosen: [Int] = []
                if random.next() % 2 == 0 {
                    for _ in 0..<(1 + Int(random.next() % 2)) {
                        let lora = loraPick.sample(&random)
                        if !chosen.contains(lora) { chosen.append(lora) }
                    }
                }
                sequence.append((checkpoint, chosen))
            }
        }

        /// A safetensors-shaped file of `bytes` bytes.
        static func file(bytes: Int, tag: String) -> Data {
            let header = Data(#"{"__metadata__":{"tag":"\#(tag)"}}"#.utf8)
            var data = Data()
            var length = UInt64(header.count).littleEndian
            withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
            data.append(header)
            data.append(Data(count: max(0, bytes - data.count)))
            return data
        }
    }

    struct Run {
        var switches = 0
        var downloadBytes: Int64 = 0
        var downloads = 0
        var evictions = 0
        var failed = 0
        var latencies: [Int64] = []
        var perPool: [String: Int] = [:]
        var seconds = 0.0

        var meanLatency: Double { latencies.isEmpty ? 0 : Double(latencies.reduce(0, +)) / Double(latencies.count) }

        func describe(label: String, tasks: Int) -> String {
            let per1000 = 1000 / Double(max(1, tasks))
            let sorted = latencies.sorted()
            let p95 = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 95 / 100)]
            return String(
                format: "  %@: %.0f switches and %.1f MB downloaded per 1,000 tasks (%.1f GB at full size; %d downloads, %d evictions); "
                    + "latency mean %.0f ms, p95 %lld ms; %d failed; tasks per pool %@; %.1f s",
                label, Double(switches) * per1000, Double(downloadBytes) * per1000 / 1e6, Double(downloadBytes) * per1000 / 1e6, downloads,
                evictions, meanLatency, p95, failed, perPool.sorted { $0.key < $1.key }.map { "\($0.value)" }.joined(separator: "/"), seconds)
        }
    }

    static func run(_ mix: Mix, affinity: Bool, options: Options, logger: Logger) async throws -> Run {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sdq-affinity-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = SDQConfiguration()
        configuration.dataDirectory = directory.path
        let opened = try await StackContext.open(configuration, logger: logger)
        let specs = (1...options.pools).map {
            PoolSpec(name: "xl-\($0)", runtime: "emulator", models: [], families: ["sdxl"], modelCacheGiB: options.cacheMB * 1e6 / 1_073_741_824)
        }
        var pools = try PoolConfiguration(pools: specs)
        pools.modelRouting = ModelRoutingSettings(affinity: affinity, slack: 4)
        let context = StackContext(transport: opened.transport, names: opened.names, pools: pools)
        try await context.transport.provision(context.topology)
        FileHandle.standardError.write(Data("  registering \(mix.checkpoints.count + mix.loras.count) files\n".utf8))
        let registry = ModelRegistry(tasks: context.transport.tasks, objects: context.transport.objects)
        for (index, data) in mix.checkpoints.enumerated() { try await register(registry, "ckpt-\(index)", .checkpoint, data, directory) }
        for (index, data) in mix.loras.enumerated() { try await register(registry, "lora-\(index)", .lora, data, directory) }

        var dispatcher = Dispatcher(context: context, logger: logger, receiveWait: .milliseconds(200))
        dispatcher.backlogInterval = .milliseconds(250)
        dispatcher.fleetRefresh = .milliseconds(500)
        var services: [any Service] = [dispatcher, ResultWriter(context: context, logger: logger, receiveWait: .milliseconds(200))]
        var runtimes: [EmulatorModels] = []
        var caches: [ModelCache] = []
        let counters = CountingObjectStore(context.transport.objects)
        for spec in specs {
            let folder = directory.appendingPathComponent("models/\(spec.name)")
            let models = EmulatorModels(directory: folder, loadBytesPerSecond: options.loadMBps * 1e6)
            let cache = ModelCache(root: folder, folders: ModelFolders(runtime: .emulator), limitBytes: spec.modelCacheBytes, objects: counters)
            var settings = InferenceConfiguration(
                pool: spec.name, receiveWait: .milliseconds(200), progressInterval: .seconds(5), modelDirectory: folder)
            settings.fleetHeartbeatInterval = .milliseconds(500)
            services.append(InferenceWorker(
                context: context, runtime: EmulatorRuntime(stepDelay: .milliseconds(5), models: models), configuration: settings,
                logger: logger, modelCache: cache))
            runtimes.append(models)
            caches.append(cache)
        }
        let handler = APIHandler(context: context, logger: logger)
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: logger))
        let started = ContinuousClock.now
        var ids: [String] = []
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for (index, task) in mix.sequence.enumerated() {
                let due = started.advanced(by: .milliseconds(Int64(Double(index) * 1000 / options.rate)))
                try await Task.sleep(until: due, clock: .continuous)
                let loras = task.loras.map { #"{"name": "lora-\#($0)", "weight": 0.7}"# }.joined(separator: ", ")
                let body = #"{"prompt": "bench \#(index)", "model": "ckpt-\#(task.checkpoint)", "loras": [\#(loras)], "steps": 8, "width": 64, "height": 64}"#
                let response = await handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(body.utf8)))
                guard response.status == 202, let id = try JSONValue.parse(response.body)["id"]?.stringValue else {
                    throw BenchError(message: "submission \(index) answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
                }
                ids.append(id)
            }
            FileHandle.standardError.write(Data("  submitted \(ids.count); waiting for them to end\n".utf8))
            var pending = Set(ids)
            while !pending.isEmpty {
                try await Task.sleep(for: .milliseconds(250))
                for id in pending where try await context.transport.tasks.get(id: id)?.status.isTerminal == true { pending.remove(id) }
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        var run = Run()
        run.seconds = Double((ContinuousClock.now - started).components.seconds)
        for id in ids {
            guard let record = try await context.transport.tasks.get(id: id) else { continue }
            if record.status != .succeeded { run.failed += 1 }
            run.perPool[record.pool, default: 0] += 1
            if let submitted = record.timings.submittedAt, let finished = record.timings.finishedAt { run.latencies.append(finished - submitted) }
        }
        run.switches = runtimes.reduce(0) { $0 + $1.switches }
        run.downloadBytes = counters.bytesRead
        for cache in caches {
            run.downloads += await cache.downloads
            run.evictions += await cache.evictions
        }
        if let embedded = context.transport as? EmbeddedTransport { await embedded.close() }
        return run
    }

    static func register(_ registry: ModelRegistry, _ name: String, _ kind: ModelRecord.Kind, _ data: Data, _ directory: URL) async throws {
        let file = directory.appendingPathComponent("\(name).upload")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        _ = try await registry.register(name: name, kind: kind, family: "sdxl", source: .file(file.path))
    }

    struct BenchError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}

/// Writes a line at once (a benchmark's figures must not wait in a buffer).
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

/// A small seeded generator, so both runs get the same tasks.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// Zipf(s = 1) over `count` items: item k (from 0) with weight 1 / (k + 1).
struct Zipf {
    let cumulative: [Double]
    init(count: Int) {
        var total = 0.0
        var sums: [Double] = []
        for rank in 1...count {
            total += 1 / Double(rank)
            sums.append(total)
        }
        cumulative = sums.map { $0 / total }
    }
    func sample(_ random: inout SplitMix) -> Int {
        let u = random.unit()
        return cumulative.firstIndex { $0 >= u } ?? cumulative.count - 1
    }
}
