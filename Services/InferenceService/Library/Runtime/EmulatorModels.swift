import Foundation
import SDQPlatform
import Synchronization

/// The emulator's model folder, for tasks that name registered models: a job's checkpoint
/// (``RuntimeJob/checkpointFile``) is loaded from `directory/checkpoints/` — taking
/// `bytes / loadBytesPerSecond` when it is not the one loaded, as a GPU's switch does — and its
/// LoRAs are read from `directory/loras/`. A file that is missing or not a safetensors file
/// (an 8-byte little-endian header length, then a JSON object of that length) fails the job
/// with `model_load_failed`, and the checkpoint loaded before stays loaded: the next job is not
/// affected. Switches and loaded bytes are counted, so benchmarks read them at the runtime.
public final class EmulatorModels: Sendable {
    public let directory: URL
    /// Simulated load speed of a checkpoint, bytes per second.
    public let loadBytesPerSecond: Double
    private let state = Mutex<(loaded: String?, switches: Int, loadedBytes: Int64)>((nil, 0, 0))
    private let folders = ModelFolders(runtime: .emulator)

    public init(directory: URL, loadBytesPerSecond: Double = 1_000_000_000) {
        self.directory = directory
        self.loadBytesPerSecond = loadBytesPerSecond
    }

    /// The checkpoint file loaded now.
    public var loaded: String? { state.withLock { $0.loaded } }
    /// Checkpoint loads so far (the first included).
    public var switches: Int { state.withLock { $0.switches } }
    /// Bytes of checkpoints loaded so far.
    public var loadedBytes: Int64 { state.withLock { $0.loadedBytes } }

    /// Loads what `job` needs, or fails it.
    func prepare(_ job: RuntimeJob) async throws(RuntimeError) {
        for lora in job.loras {
            _ = try check(directory.appendingPathComponent(folders.path(kind: .lora, fileName: lora.fileName)), name: lora.fileName)
        }
        guard let file = job.checkpointFile, loaded != file else { return }
        let bytes = try check(directory.appendingPathComponent(folders.path(kind: .checkpoint, fileName: file)), name: file)
        let seconds = Double(bytes) / max(1, loadBytesPerSecond)
        do { try await Task.sleep(for: .milliseconds(Int64(seconds * 1000))) } catch {
            throw RuntimeError(code: "cancelled", message: "the job was cancelled", retryable: true)
        }
        state.withLock {
            $0.loaded = file
            $0.switches += 1
            $0.loadedBytes += bytes
        }
    }

    private func check(_ url: URL, name: String) throws(RuntimeError) -> Int64 { try Self.validate(url, name: name) }

    /// The file's size, once its safetensors header reads; `model_load_failed` when it is
    /// missing or does not read.
    public static func validate(_ url: URL, name: String) throws(RuntimeError) -> Int64 {
        func failed(_ why: String) -> RuntimeError {
            RuntimeError(code: "model_load_failed", message: "the emulator cannot load \(name): \(why)", retryable: false)
        }
        guard let handle = try? FileHandle(forReadingFrom: url) else { throw failed("no such file in its model folder") }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd(), (try? handle.seek(toOffset: 0)) != nil,
            let head = try? handle.read(upToCount: 8), head.count == 8
        else { throw failed("shorter than a safetensors header") }
        let length = head.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length >= 2, length <= min(100_000_000, size - 8), let header = try? handle.read(upToCount: Int(length)),
            header.count == Int(length), case .object? = try? JSONValue.parse(header)
        else { throw failed("not a safetensors file (its header does not read)") }
        return Int64(size)
    }
}
