import Foundation
import Hummingbird
import SDQPlatform
import SDQTestSupport
import Testing

/// The model registry on both transports: a file is stored under its digest and its SHA-256
/// computed from the bytes; a digest the operator gave is checked before anything is stored;
/// names are unique unless replaced; removal keeps a file another name still uses. (Both
/// transports where the stores differ; the rest of the logic is the registry's own.)
@Suite struct ModelRegistryTests {
    static func temporaryFile(_ data: Data) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("model-\(UUID().uuidString).safetensors")
        try data.write(to: url)
        return url
    }

    @Test(arguments: TransportKind.available)
    func registersAFileByItsDigest(kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let registry = ModelRegistry(tasks: fixture.transport.tasks, objects: fixture.transport.objects)
        let data = safetensorsFile(bytes: 300_000, tag: "base")
        let file = try Self.temporaryFile(data)
        defer { try? FileManager.default.removeItem(at: file) }

        let record = try await registry.register(name: "sdxl-base", kind: .checkpoint, family: "sdxl", source: .file(file.path))
        #expect(record.sha256 == sha256Hex(data))
        #expect(record.bytes == Int64(data.count))
        #expect(record.key == "models/sha256/\(sha256Hex(data))")
        #expect(record.fileName == "sdxl-base.safetensors")
        // The bucket holds exactly the bytes, read back in ranges.
        #expect(try await fixture.transport.objects.size(key: record.key) == Int64(data.count))
        let digest = try #require(try await FileDigest.sha256(ofObject: record.key, in: fixture.transport.objects))
        #expect(digest.sha256 == record.sha256)
        #expect(try await registry.list().map(\.name) == ["sdxl-base"])
        #expect(try await fixture.transport.tasks.model(named: "sdxl-base") == record)

        // A second registration of the name is refused unless it replaces.
        await #expect(throws: ModelRegistryError(code: "model_exists", message: "a model named sdxl-base is registered (use --replace to point it at a new file)", field: "name")) {
            try await registry.register(name: "sdxl-base", kind: .checkpoint, family: "sdxl", source: .file(file.path))
        }
        let other = safetensorsFile(bytes: 1000, tag: "other")
        let otherFile = try Self.temporaryFile(other)
        defer { try? FileManager.default.removeItem(at: otherFile) }
        let replaced = try await registry.register(name: "sdxl-base", kind: .checkpoint, family: "sdxl", source: .file(otherFile.path), replace: true)
        #expect(replaced.sha256 == sha256Hex(other))
        #expect(try await fixture.transport.tasks.model(named: "sdxl-base")?.sha256 == sha256Hex(other))
    }

    @Test(arguments: TransportKind.available)
    func aWrongDigestRegistersAndStoresNothing(kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind)
        let registry = ModelRegistry(tasks: fixture.transport.tasks, objects: fixture.transport.objects)
        let data = safetensorsFile(bytes: 5000, tag: "lora")
        let file = try Self.temporaryFile(data)
        defer { try? FileManager.default.removeItem(at: file) }
        let wrong = String(repeating: "ab", count: 32)
        do {
            _ = try await registry.register(name: "style", kind: .lora, family: "sdxl", source: .file(file.path), sha256: wrong)
            Issue.record("registered with a wrong digest")
        } catch {
            #expect(error.code == "digest_mismatch")
            #expect(error.field == "sha256")
        }
        #expect(try await registry.list().isEmpty)
        #expect(try await fixture.transport.objects.size(key: "models/sha256/\(sha256Hex(data))") == nil)
        // The right digest (any case) registers.
        let record = try await registry.register(
            name: "style", kind: .lora, family: "sdxl", source: .file(file.path), sha256: sha256Hex(data).uppercased())
        #expect(record.sha256 == sha256Hex(data))
    }

    @Test func badInputChangesNothing() async throws {
        let fixture = try await StackFixture.make(.embedded)
        let registry = ModelRegistry(tasks: fixture.transport.tasks, objects: fixture.transport.objects)
        let cases: [(String, String, ModelRegistry.Source, String?, String)] = [
            ("../evil", "sdxl", .file("/dev/null"), nil, "name"),
            ("ok", "SDXL!", .file("/dev/null"), nil, "family"),
            ("ok", "sdxl", .file("/dev/null"), "xyz", "sha256"),
            ("ok", "sdxl", .file("/no/such/file"), nil, "file"),
            ("ok", "sdxl", .object("models/none"), nil, "key"),
            ("ok", "sdxl", .object("imports/vae.safetensors"), nil, "key"),  // outside models/: the workers cannot read it
            ("ok", "sdxl", .object("models/../outputs/x.png"), nil, "key"),
            ("ok", "sdxl", .url("ftp://example.com/x"), nil, "url"),
        ]
        for (name, family, source, digest, field) in cases {
            do {
                _ = try await registry.register(name: name, kind: .checkpoint, family: family, source: source, sha256: digest)
                Issue.record("registered \(name) from \(source)")
            } catch {
                #expect(error.field == field, "\(error)")
            }
        }
        #expect(try await registry.list().isEmpty)
    }

    @Test func anObjectInTheBucketIsRegisteredWhereItIs() async throws {
        let fixture = try await StackFixture.make(.embedded)
        let registry = ModelRegistry(tasks: fixture.transport.tasks, objects: fixture.transport.objects)
        let data = safetensorsFile(bytes: 20_000, tag: "vae")
        try await fixture.transport.objects.put(key: "models/imports/vae.safetensors", data: data, contentType: "application/octet-stream")
        let record = try await registry.register(name: "sdxl-vae", kind: .vae, family: "sdxl", source: .object("models/imports/vae.safetensors"))
        #expect(record.key == "models/imports/vae.safetensors")
        #expect(record.sha256 == sha256Hex(data))
        // Removing it leaves an object sdq did not store.
        _ = try await registry.remove(name: "sdxl-vae")
        #expect(try await fixture.transport.objects.exists(key: "models/imports/vae.safetensors"))
    }

    @Test func removalKeepsAFileAnotherNameUses() async throws {
        let fixture = try await StackFixture.make(.embedded)
        let registry = ModelRegistry(tasks: fixture.transport.tasks, objects: fixture.transport.objects)
        let data = safetensorsFile(bytes: 4000, tag: "shared")
        let file = try Self.temporaryFile(data)
        defer { try? FileManager.default.removeItem(at: file) }
        let first = try await registry.register(name: "a", kind: .checkpoint, family: "sd15", source: .file(file.path))
        let second = try await registry.register(name: "b", kind: .checkpoint, family: "sd15", source: .file(file.path))
        #expect(first.key == second.key)
        _ = try await registry.remove(name: "a")
        #expect(try await fixture.transport.objects.exists(key: first.key))
        _ = try await registry.remove(name: "b")
        #expect(try await !fixture.transport.objects.exists(key: first.key))
        do {
            _ = try await registry.remove(name: "b")
            Issue.record("removed a model twice")
        } catch {
            #expect(error.code == "unknown_model")
        }
    }

    @Test func aURLIsDownloadedOnceIntoTheBucket() async throws {
        let fixture = try await StackFixture.make(.embedded)
        let registry = ModelRegistry(tasks: fixture.transport.tasks, objects: fixture.transport.objects)
        let data = safetensorsFile(bytes: 1 << 20, tag: "remote")
        let router = Router()
        router.get("/files/remote.safetensors") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/gone") { _, _ in Response(status: .notFound) }
        try await withLoopbackServer(router) { port in
            let url = "http://127.0.0.1:\(port)/files/remote.safetensors"
            let record = try await registry.register(name: "remote", kind: .checkpoint, family: "sdxl", source: .url(url), sha256: sha256Hex(data))
            #expect(record.source == url)
            #expect(record.bytes == Int64(data.count))
            #expect(try await fixture.transport.objects.size(key: record.key) == Int64(data.count))
            do {
                _ = try await registry.register(name: "gone", kind: .checkpoint, family: "sdxl", source: .url("http://127.0.0.1:\(port)/gone"))
                Issue.record("registered a 404")
            } catch let error as ModelRegistryError {
                #expect(error.code == "fetch_failed")
                #expect(error.field == "url")
            }
        }
    }
}
