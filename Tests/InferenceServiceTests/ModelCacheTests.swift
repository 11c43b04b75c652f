import Foundation
import InferenceService
import SDQMessages
import SDQPlatform
import SDQTestSupport
import Testing

/// The model cache beside the GPU: one download per file however many tasks want it, files
/// checked against their registered SHA-256 before the runtime can see them, and eviction of
/// the least recently used files under a byte limit — never of a file a task holds.
@Suite struct ModelCacheTests {
    struct Setup {
        let fixture: EmbeddedFixture
        let root: TemporaryDirectory
        let objects: CountingObjectStore

        static func make() async throws -> Setup {
            let fixture = try await EmbeddedFixture.make()
            return Setup(fixture: fixture, root: TemporaryDirectory(), objects: CountingObjectStore(fixture.transport.objects))
        }

        func cache(limit: Int64, chunk: Int = 64 << 10, runtime: RuntimeKind = .comfyui) -> ModelCache {
            ModelCache(root: root.url, folders: ModelFolders(runtime: runtime), limitBytes: limit, objects: objects, chunkSize: chunk)
        }

        func register(_ name: String, bytes: Int, kind: ModelRecord.Kind = .checkpoint) async throws -> Sdq_V1_ModelAsset {
            Sdq_V1_ModelAsset(record: try await registerModel(name, kind: kind, data: safetensorsFile(bytes: bytes, tag: name), in: fixture.context))
        }

        func file(_ path: String) -> Data? { FileManager.default.contents(atPath: root.url.appendingPathComponent(path).path) }
    }

    @Test func concurrentTasksShareOneDownload() async throws {
        let setup = try await Setup.make()
        let cache = setup.cache(limit: 10 << 20)
        let asset = try await setup.register("sdxl-base", bytes: 1_000_000)
        let paths = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try await cache.ensure(asset) } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(paths) == ["checkpoints/sdxl-base.safetensors"])
        #expect(await cache.downloads == 1)
        // Read once from the bucket, a chunk at a time.
        #expect(setup.objects.bytesRead == 1_000_000)
        #expect(setup.objects.reads == (1_000_000 + (64 << 10) - 1) / (64 << 10))
        #expect(sha256Hex(try #require(setup.file(paths[0]))) == asset.sha256)
        // Cached: no further read.
        _ = try await cache.ensure(asset)
        #expect(setup.objects.bytesRead == 1_000_000)
        #expect(await cache.takeChangedKinds() == [.checkpoint])
        #expect(await cache.takeChangedKinds().isEmpty)
    }

    @Test func leastRecentlyUsedFilesAreEvictedUnderTheLimit() async throws {
        let setup = try await Setup.make()
        let cache = setup.cache(limit: 300_000)
        let a = try await setup.register("a", bytes: 100_000)
        let b = try await setup.register("b", bytes: 100_000)
        let c = try await setup.register("c", bytes: 100_000)
        let d = try await setup.register("d", bytes: 100_000)
        _ = try await cache.ensure(a)
        _ = try await cache.ensure(b)
        _ = try await cache.ensure(c)
        _ = try await cache.ensure(a)  // a is now more recent than b
        _ = try await cache.ensure(d)
        #expect(await cache.cached.map(\.path) == ["checkpoints/a.safetensors", "checkpoints/c.safetensors", "checkpoints/d.safetensors"])
        #expect(setup.file("checkpoints/b.safetensors") == nil)
        #expect(await cache.usedBytes == 300_000)
        #expect(await cache.evictions == 1)

        // A file a task holds is not evicted, even when it is the oldest.
        _ = try await cache.acquire([c])
        _ = try await cache.ensure(b)  // evicts a (c is held, d more recent)
        #expect(await cache.contains(c))
        #expect(await !cache.contains(a))
        await cache.release([c])
        // Taking c for the task was a use: d is now the least recently used, and goes.
        _ = try await cache.ensure(a)
        #expect(await !cache.contains(d))
        #expect(await cache.contains(c))
        #expect(await cache.usedBytes <= 300_000)
    }

    @Test func aFileLargerThanTheCacheIsRefused() async throws {
        let setup = try await Setup.make()
        let cache = setup.cache(limit: 1000)
        let big = try await setup.register("big", bytes: 5000)
        do {
            _ = try await cache.ensure(big)
            Issue.record("cached a file larger than the cache")
        } catch {
            #expect(error.code == "model_too_large")
            #expect(!error.retryable)
        }
        #expect(setup.file("checkpoints/big.safetensors") == nil)
    }

    @Test func bytesThatDoNotMatchTheRegistrationNeverReachTheFolder() async throws {
        let setup = try await Setup.make()
        let cache = setup.cache(limit: 10 << 20)
        var asset = try await setup.register("tampered", bytes: 50_000)
        // The object changes behind the registry's back (same size, other bytes).
        try await setup.fixture.transport.objects.put(key: asset.key, data: corruptModelFile(bytes: 50_000), contentType: "application/octet-stream")
        do {
            _ = try await cache.ensure(asset)
            Issue.record("cached bytes with another digest")
        } catch {
            #expect(error.code == "model_corrupt")
            #expect(!error.retryable)
        }
        #expect(setup.file("checkpoints/tampered.safetensors") == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: setup.root.url.appendingPathComponent(".sdq-cache/partial").path).isEmpty)
        // A file gone from the bucket.
        asset.key = "models/sha256/none"
        do {
            _ = try await cache.ensure(asset)
            Issue.record("cached a missing object")
        } catch {
            #expect(error.code == "model_unavailable")
        }
    }

    @Test func theIndexSurvivesARestartAndSeesFilesThatChanged() async throws {
        let setup = try await Setup.make()
        let a = try await setup.register("a", bytes: 10_000)
        let lora = try await setup.register("style", bytes: 2_000, kind: .lora)
        do {
            let cache = setup.cache(limit: 1 << 20, runtime: .sdwebui)
            #expect(try await cache.acquire([a, lora]) == ["Stable-diffusion/a.safetensors", "Lora/style.safetensors"])
        }
        let reopened = setup.cache(limit: 1 << 20, runtime: .sdwebui)
        #expect(await reopened.contains(a))
        #expect(await reopened.verify(a))
        _ = try await reopened.ensure(a)
        #expect(await reopened.downloads == 0)
        // A file truncated on disk is dropped when the cache opens, and fetched again.
        try Data([1, 2, 3]).write(to: setup.root.url.appendingPathComponent("Lora/style.safetensors"))
        let third = setup.cache(limit: 1 << 20, runtime: .sdwebui)
        #expect(await !third.contains(lora))
        _ = try await third.ensure(lora)
        #expect(await third.downloads == 1)
        #expect(sha256Hex(try #require(setup.file("Lora/style.safetensors"))) == lora.sha256)
    }
}
