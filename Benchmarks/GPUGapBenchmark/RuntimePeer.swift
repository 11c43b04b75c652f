import Foundation
import SDQPlatform

/// A runtime peer that is not sdq's code — `scripts/sdwebui_peer.py` (from the A1111 API) or
/// `scripts/comfyui_peer.py` (from ComfyUI's HTTP and websocket API) — started as a child
/// process. Each generation it runs appends a JSON line with its own wall-clock times (`received`,
/// `start`, `end`, in seconds) to its log: the gap is measured where the runtime sees it.
struct RuntimePeer {
    /// `sdwebui` or `comfyui`.
    let kind: String
    let url: String
    let log: URL
    let process: Process

    /// Starts the peer's script from `scriptsDirectory` on a free port and waits until it listens.
    static func start(kind: String, stepMilliseconds: Int, scriptsDirectory: URL, workDirectory: URL) async throws -> RuntimePeer {
        let script = scriptsDirectory.appendingPathComponent("\(kind)_peer.py")
        guard FileManager.default.fileExists(atPath: script.path) else {
            throw BenchmarkError("no runtime peer at \(script.path): run from the repository root or pass --scripts DIR")
        }
        let port = try freePort()
        let log = workDirectory.appendingPathComponent("\(kind)-peer.jsonl")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, "--port", "\(port)", "--log", log.path, "--step-ms", "\(stepMilliseconds)"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let url = "http://127.0.0.1:\(port)"
        for _ in 0..<200 {
            if canConnect(port: port) { return RuntimePeer(kind: kind, url: url, log: log, process: process) }
            guard process.isRunning else { throw BenchmarkError("the \(kind) peer exited with status \(process.terminationStatus)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        throw BenchmarkError("the \(kind) peer did not listen on \(url) within 10 s")
    }

    /// Stops the peer, waiting at most 2 s for it to go. SIGKILL: a child of this process may
    /// inherit SIGTERM ignored (the service lifecycle ignores it to handle it itself).
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        for _ in 0..<200 where process.isRunning { usleep(10_000) }
    }

    /// One generation as the peer logged it (times in epoch milliseconds).
    struct Generation {
        var received: Double
        var start: Double
        var end: Double
        /// The sdq task it ran, from `force_task_id` (`sdq-<task>-<n>`) or the ComfyUI peer's `sdq_task`.
        var task: String
    }

    /// The generations the peer logged, in the order they began.
    func generations() throws -> [Generation] {
        let text = try String(contentsOf: log, encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> Generation? in
            guard let record = try? JSONValue.parse(Data(line.utf8)), let start = record["start"]?.numberValue,
                let end = record["end"]?.numberValue
            else { return nil }
            var task = record["sdq_task"]?.stringValue ?? ""
            if task.isEmpty, let forced = record["task"]?.stringValue, forced.hasPrefix("sdq-"), let dash = forced.lastIndex(of: "-") {
                task = String(forced[forced.index(forced.startIndex, offsetBy: 4)..<dash])
            }
            return Generation(
                received: (record["received"]?.numberValue ?? start) * 1000, start: start * 1000, end: end * 1000, task: task)
        }.sorted { $0.start < $1.start }
    }

    /// A ComfyUI txt2img workflow of `steps` steps (what a ComfyUI pool's tasks carry).
    static func comfyWorkflow(seed: Int, steps: Int) -> String {
        """
        {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
         "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "gap \(seed)", "clip": ["4", 1]}},
         "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
         "3": {"class_type": "KSampler", "inputs": {"seed": \(seed), "steps": \(steps), "cfg": 7, "sampler_name": "euler",
               "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
               "latent_image": ["5", 0]}},
         "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
         "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "gap", "images": ["8", 0]}}}
        """
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchmarkError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw BenchmarkError("cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

extension Main {
    /// The gap as the peer saw it, and how closely sdq's runtime windows agree with it.
    static func reportPeer(_ generations: [RuntimePeer.Generation], records: [TaskRecord], peer: RuntimePeer) {
        let gaps = zip(generations, generations.dropFirst()).map { $1.start - $0.end }.sorted()
        let generating = generations.reduce(0.0) { $0 + ($1.end - $1.start) }
        let busy = (generations.last?.end ?? 0) - (generations.first?.start ?? 0)
        let waited = zip(generations, generations.dropFirst()).filter { $1.received < $0.end }.count
        let byID = Dictionary(records.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var starts: [Double] = [], ends: [Double] = []
        for generation in generations {
            guard let record = byID[generation.task], let start = record.timings.runtimeStartedAt,
                let end = record.timings.runtimeFinishedAt
            else { continue }
            starts.append(abs(Double(start) - generation.start))
            ends.append(abs(Double(end) - generation.end))
        }
        starts.sort()
        ends.sort()
        let name = peer.kind == "sdwebui" ? "SD WebUI peer (scripts/sdwebui_peer.py)" : "ComfyUI peer (scripts/comfyui_peer.py)"
        print("  as the \(name) saw it — \(generations.count) generations:")
        print(String(
            format: "    gap between generations (ms): median %.2f  p99 %.2f  max %.2f  (goals: median < 2 embedded / < 3 moto; p99 < 5 / < 10)",
            quantile(gaps, 0.5), quantile(gaps, 0.99), gaps.last ?? 0))
        print(String(
            format: "    overhead (busy span / generating − 1): %.2f%%  (goal < 1 %%)", (busy / max(1, generating) - 1) * 100))
        print("    requests already waiting in the peer's queue when the one ahead ended: \(waited) of \(max(0, generations.count - 1))")
        if !starts.isEmpty {
            print(String(
                format: "    sdq's runtime window vs the peer's (%d matched): start |diff| median %.2f ms p99 %.2f ms; end |diff| median %.2f ms p99 %.2f ms  (goal: within 1 ms at the median)",
                starts.count, quantile(starts, 0.5), quantile(starts, 0.99), quantile(ends, 0.5), quantile(ends, 0.99)))
        }
    }
}
