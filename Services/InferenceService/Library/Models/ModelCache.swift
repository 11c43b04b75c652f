import Foundation
import SDQMessages
import SDQPlatform

/// The registered model files on this worker's disk, in the runtime's model folders
/// (``ModelFolders``) under `root` (`SDQ_MODEL_DIR`, shared with the runtime container).
/// Failures are ``RuntimeError``s: `model_unavailable`, `model_corrupt` and `model_too_large`
/// (final), `model_fetch_failed` and `model_cache_failed` (retryable).
///
/// - A file is fetched from the stack's bucket in ranged reads of ``chunkSize`` (never whole in
///   memory), hashed as it is written to a partial file beside the folders, checked against the
///   registered SHA-256 and size, and only then renamed into place: the runtime never sees a
///   partial or wrong file.
/// - One download per file at a time: a second task needing a file being fetched waits for the
///   same download (single flight).
/// - Files are bound by ``limitBytes``: before a new file goes in, the least recently used files
///   are evicted — never one a task in hand holds (``acquire(_:)`` … ``release(_:)``).
/// - The index (`.sdq-cache/index.json`) survives restarts; an entry whose file is gone or has
///   another size is dropped when the cache opens. Files the cache did not write (models baked
///   into the volume) are neither counted nor evicted.
public actor ModelCache {
    /// One cached file.
    public struct Entry: Codable, Sendable, Equatable {
        /// Relative to the root (`checkpoints/name.safetensors`).
        public var path: String
        public var sha256: String
        public var bytes: Int64
        public var kind: ModelRecord.Kind
        /// Use order (higher is more recent).
        public var lastUsed: Int64
    }

    public let root: URL
    public let folders: ModelFolders
    /// The most bytes cached files may take (exceeded only while every file is held by tasks).
    public let limitBytes: Int64
    /// Bytes per ranged read.
    public let chunkSize: Int
    let objects: any ObjectStore
    private var entries: [String: Entry] = [:]
    private var inFlight: [String: Task<Result<Entry, RuntimeError>, Never>] = [:]
    private var holds: [String: Int] = [:]
    private var tick: Int64 = 0
    private var changedKinds: Set<ModelRecord.Kind> = []
    /// Downloads completed and their bytes, and files evicted, since the cache opened.
    public private(set) var downloads = 0
    public private(set) var downloadedBytes: Int64 = 0
    public private(set) var evictions = 0

    public init(root: URL, folders: ModelFolders, limitBytes: Int64, objects: any ObjectStore, chunkSize: Int = FileDigest.chunkSize) {
        self.root = root
        self.folders = folders
        self.limitBytes = limitBytes
        self.objects = objects
        self.chunkSize = chunkSize
        let fm = FileManager.default
        try? fm.createDirectory(at: root.appendingPathComponent(".sdq-cache/partial"), withIntermediateDirectories: true)
        // Partial files of a process that died are never finished.
        for name in (try? fm.contentsOfDirectory(atPath: root.appendingPathComponent(".sdq-cache/partial").path)) ?? [] {
            try? fm.removeItem(at: root.appendingPathComponent(".sdq-cache/partial/\(name)"))
        }
        if let data = fm.contents(atPath: root.appendingPathComponent(".sdq-cache/index.json").path),
            let saved = try? JSONDecoder().decode([Entry].self, from: data)
        {
            for entry in saved {
                let size = (try? fm.attributesOfItem(atPath: root.appendingPathComponent(entry.path).path)[.size] as? NSNumber)?.int64Value
                if size == entry.bytes { entries[entry.path] = entry }
            }
            tick = entries.values.map(\.lastUsed).max() ?? 0
        }
    }

    /// Bytes the cached files take.
    public var usedBytes: Int64 { entries.values.reduce(0) { $0 + $1.bytes } }

    /// Every cached file.
    public var cached: [Entry] { entries.values.sorted { $0.path < $1.path } }

    /// The digests of the cached checkpoints (what the heartbeat reports).
    public var cachedCheckpoints: [String] { entries.values.filter { $0.kind == .checkpoint }.map(\.sha256).sorted() }

    /// Whether `asset`'s file is cached now (no download needed).
    public func contains(_ asset: Sdq_V1_ModelAsset) -> Bool {
        entries[path(of: asset)]?.sha256 == asset.sha256
    }

    /// The kinds whose folders gained or lost files since the last call: the runtime needs a
    /// rescan of those only.
    public func takeChangedKinds() -> Set<ModelRecord.Kind> {
        defer { changedKinds = [] }
        return changedKinds
    }

    /// Makes every file of a task ready and holds them (no eviction) until ``release(_:)``.
    /// Returns their paths relative to the root. On failure nothing stays held.
    public func acquire(_ assets: [Sdq_V1_ModelAsset]) async throws(RuntimeError) -> [String] {
        var held: [Sdq_V1_ModelAsset] = []
        var paths: [String] = []
        for asset in assets {
            hold(asset)
            held.append(asset)
            do {
                paths.append(try await ensure(asset))
            } catch {
                release(held)
                throw error
            }
        }
        return paths
    }

    /// Lets the files of a finished task be evicted again.
    public func release(_ assets: [Sdq_V1_ModelAsset]) {
        for asset in assets {
            let path = path(of: asset)
            let count = (holds[path] ?? 0) - 1
            holds[path] = count > 0 ? count : nil
        }
    }

    /// The file of `asset` on disk, downloaded and checked first unless it is cached; its path
    /// relative to the root.
    public func ensure(_ asset: Sdq_V1_ModelAsset) async throws(RuntimeError) -> String {
        let path = path(of: asset)
        if let entry = entries[path], entry.sha256 == asset.sha256 {
            touch(path)
            return path
        }
        if let running = inFlight[path] { return try await running.value.get().path }
        let partial = root.appendingPathComponent(".sdq-cache/partial/\(asset.sha256).\(UUID().uuidString)")
        let (objects, chunk) = (self.objects, chunkSize)
        let entry = Entry(path: path, sha256: asset.sha256, bytes: asset.bytes, kind: Self.kind(of: asset), lastUsed: 0)
        // Download and install are one task: whoever waits on it sees the file in place.
        let download = Task { () async -> Result<Entry, RuntimeError> in
            do throws(RuntimeError) {
                try await Self.download(asset, to: partial, from: objects, chunkSize: chunk)
                return .success(try self.install(entry, from: partial))
            } catch {
                try? FileManager.default.removeItem(at: partial)
                return .failure(error)
            }
        }
        inFlight[path] = download
        defer { inFlight[path] = nil }
        return try await download.value.get().path
    }

    /// Whether the file of `asset` is cached and its bytes on disk still have its SHA-256 (read
    /// whole: for required models at start, not per task).
    public func verify(_ asset: Sdq_V1_ModelAsset) -> Bool {
        let path = path(of: asset)
        guard entries[path]?.sha256 == asset.sha256,
            let digest = try? FileDigest.sha256(of: root.appendingPathComponent(path)), digest.sha256 == asset.sha256
        else {
            if entries[path] != nil {
                entries[path] = nil
                save()
            }
            return false
        }
        return true
    }

    /// The path of `asset`'s file relative to the root.
    public func path(of asset: Sdq_V1_ModelAsset) -> String {
        folders.path(kind: Self.kind(of: asset), fileName: asset.fileName)
    }

    private static func kind(of asset: Sdq_V1_ModelAsset) -> ModelRecord.Kind { ModelRecord.Kind(rawValue: asset.kind) ?? .checkpoint }

    private func hold(_ asset: Sdq_V1_ModelAsset) { holds[path(of: asset), default: 0] += 1 }

    private func touch(_ path: String) {
        tick += 1
        entries[path]?.lastUsed = tick
    }

    /// Evicts least recently used files not held until `bytes` more fit, then renames the checked
    /// partial file into place and records it.
    private func install(_ fetched: Entry, from partial: URL) throws(RuntimeError) -> Entry {
        let fm = FileManager.default
        var entry = fetched
        guard entry.bytes <= limitBytes else {
            try? fm.removeItem(at: partial)
            throw RuntimeError(
                code: "model_too_large", message: "\(entry.path) is \(entry.bytes) bytes, more than the cache's \(limitBytes)", retryable: false)
        }
        entries[entry.path] = nil  // a file of the same name with other bytes is replaced
        var used = usedBytes
        for victim in entries.values.sorted(by: { $0.lastUsed < $1.lastUsed }) where used + entry.bytes > limitBytes {
            guard holds[victim.path] == nil else { continue }
            try? fm.removeItem(at: root.appendingPathComponent(victim.path))
            entries[victim.path] = nil
            used -= victim.bytes
            evictions += 1
            changedKinds.insert(victim.kind)
        }
        let target = root.appendingPathComponent(entry.path)
        do {
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw RuntimeError(code: "model_cache_failed", message: "cannot create \(target.deletingLastPathComponent().path): \(error)", retryable: true)
        }
        guard rename(partial.path, target.path) == 0 else {
            let code = errno
            try? fm.removeItem(at: partial)
            throw RuntimeError(code: "model_cache_failed", message: "cannot move \(entry.path) into place: errno \(code)", retryable: true)
        }
        tick += 1
        entry.lastUsed = tick
        entries[entry.path] = entry
        downloads += 1
        downloadedBytes += entry.bytes
        changedKinds.insert(entry.kind)
        save()
        return entry
    }

    private func save() {
        guard let data = try? JSONEncoder().encode(entries.values.sorted { $0.path < $1.path }) else { return }
        try? data.write(to: root.appendingPathComponent(".sdq-cache/index.json"), options: .atomic)
    }

    /// Reads the object in ranges into `partial`, hashing as it goes, and checks size and digest.
    static func download(
        _ asset: Sdq_V1_ModelAsset, to partial: URL, from objects: any ObjectStore, chunkSize: Int
    ) async throws(RuntimeError) {
        func storage(_ error: TransportError) -> RuntimeError {
            RuntimeError(code: "model_fetch_failed", message: "reading \(asset.key) failed: \(error.message)", retryable: true)
        }
        let size: Int64?
        do { size = try await objects.size(key: asset.key) } catch { throw storage(error) }
        guard let size else {
            throw RuntimeError(
                code: "model_unavailable", message: "the file of \(asset.name) (\(asset.key)) is not in the bucket", retryable: false)
        }
        guard size == asset.bytes else {
            throw RuntimeError(
                code: "model_corrupt", message: "the file of \(asset.name) is \(size) bytes; \(asset.bytes) were registered", retryable: false)
        }
        let writer: HashingFileWriter
        do { writer = try HashingFileWriter(url: partial) } catch {
            throw RuntimeError(code: "model_cache_failed", message: "cannot create \(partial.path): \(error)", retryable: true)
        }
        var offset: Int64 = 0
        do throws(RuntimeError) {
            while offset < size {
                let chunk: Data?
                do { chunk = try await objects.read(key: asset.key, offset: offset, length: chunkSize) } catch { throw storage(error) }
                guard let chunk, !chunk.isEmpty else {
                    throw RuntimeError(code: "model_unavailable", message: "\(asset.key) ended or vanished while it was read", retryable: true)
                }
                do { try writer.write(chunk) } catch {
                    throw RuntimeError(code: "model_cache_failed", message: "writing \(partial.path) failed: \(error)", retryable: true)
                }
                offset += Int64(chunk.count)
            }
        } catch {
            writer.abandon()
            throw error
        }
        let digest: (sha256: String, bytes: Int64)
        do { digest = try writer.finish() } catch {
            throw RuntimeError(code: "model_cache_failed", message: "writing \(partial.path) failed: \(error)", retryable: true)
        }
        guard digest.sha256 == asset.sha256, digest.bytes == asset.bytes else {
            throw RuntimeError(
                code: "model_corrupt",
                message: "the file of \(asset.name) has SHA-256 \(digest.sha256), not the registered \(asset.sha256)", retryable: false)
        }
    }
}
