import Foundation
import NIOCore

/// Why a model could not be registered or removed.
public struct ModelRegistryError: CodedError, Equatable {
    public let code: String
    public let message: String
    public let field: String?

    public init(code: String, message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }
}

/// Registers, lists and removes models (``ModelRecord``): the file is stored in the stack's
/// bucket and its SHA-256 computed from the bytes stored — and checked against the digest the
/// operator gave, when one was given — before the record is written, so a registered model
/// always names a whole, known file.
public struct ModelRegistry: Sendable {
    public let tasks: any TaskStore
    public let objects: any ObjectStore
    /// Where https sources are downloaded from (an operator's command: private addresses allowed).
    public var fetcher: URLFetcher

    /// Where a model file comes from.
    public enum Source: Sendable, Equatable {
        /// A file on this machine, uploaded to the bucket.
        case file(String)
        /// An http(s) URL, downloaded once and stored in the bucket.
        case url(String)
        /// An object already in the stack's bucket, registered where it is.
        case object(String)
    }

    public init(tasks: any TaskStore, objects: any ObjectStore, fetcher: URLFetcher? = nil) {
        self.tasks = tasks
        self.objects = objects
        self.fetcher = fetcher ?? URLFetcher(policy: OutboundURLPolicy(allowPrivate: true), maxBytes: Int(Self.maxBytes), timeout: .seconds(3600))
    }

    /// The largest model file accepted (the largest S3 object).
    public static let maxBytes: Int64 = 5 << 40

    /// Registers `name`. `sha256`, when given, must match the file's; `replace` allows a
    /// registered name to point at a new file (tasks already queued keep the file they named).
    public func register(
        name: String, kind: ModelRecord.Kind, family: String, source: Source, sha256 expected: String? = nil,
        replace: Bool = false, now: Int64 = EpochClock.nowMillis()
    ) async throws(ModelRegistryError) -> ModelRecord {
        if let problem = ModelRecord.validateName(name) { throw ModelRegistryError(code: "invalid_model", message: problem, field: "name") }
        if let problem = ModelRecord.validateFamily(family) { throw ModelRegistryError(code: "invalid_model", message: problem, field: "family") }
        let expected = expected?.lowercased()
        if let expected, let problem = ModelRecord.validateDigest(expected) {
            throw ModelRegistryError(code: "invalid_model", message: problem, field: "sha256")
        }
        if !replace, try await existing(name) != nil {
            throw ModelRegistryError(code: "model_exists", message: "a model named \(name) is registered (use --replace to point it at a new file)", field: "name")
        }
        let stored: (key: String, sha256: String, bytes: Int64, origin: String?)
        switch source {
        case .file(let path):
            stored = try await upload(file: URL(fileURLWithPath: path), expected: expected)
        case .url(let url):
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""), parsed.host != nil else {
                throw ModelRegistryError(code: "invalid_model", message: "not an http(s) URL: \(url)", field: "url")
            }
            stored = try await download(url, expected: expected)
        case .object(let key):
            // The inference services' role reads model files under models/ only (the SAM
            // template's InferencePolicy): a file elsewhere would register and then never load.
            guard key.hasPrefix(ModelRecord.keyPrefix), key.count > ModelRecord.keyPrefix.count, !key.split(separator: "/").contains("..") else {
                throw ModelRegistryError(
                    code: "invalid_model", message: "a model object must be under \(ModelRecord.keyPrefix) in the stack's bucket (the workers read only there): \(key)",
                    field: "key")
            }
            let digest: (sha256: String, bytes: Int64)?
            do { digest = try await FileDigest.sha256(ofObject: key, in: objects) } catch { throw Self.storage(error) }
            guard let digest else {
                throw ModelRegistryError(code: "source_not_found", message: "no object \(key) in bucket \(objects.bucket)", field: "key")
            }
            stored = (key, digest.sha256, digest.bytes, key)
        }
        if let expected, expected != stored.sha256 {
            throw ModelRegistryError(
                code: "digest_mismatch", message: "the file's SHA-256 is \(stored.sha256), not \(expected); nothing was registered",
                field: "sha256")
        }
        let sourceText: String? = if case .file = source { nil } else { stored.origin }
        let record = ModelRecord(
            name: name, kind: kind, family: family, bytes: stored.bytes, sha256: stored.sha256,
            fileName: ModelRecord.fileName(name: name, source: Self.sourceName(source)), key: stored.key, source: sourceText,
            registeredAt: now)
        let written: Bool
        do { written = try await tasks.putModel(record, replace: replace) } catch { throw Self.storage(error) }
        guard written else {
            throw ModelRegistryError(code: "model_exists", message: "a model named \(name) was registered meanwhile", field: "name")
        }
        return record
    }

    /// Removes `name`'s registration, and its file when sdq stored it and no other name uses it.
    /// Tasks that named it and have not started fail with `model_unavailable`.
    public func remove(name: String) async throws(ModelRegistryError) -> ModelRecord {
        guard let record = try await existing(name) else {
            throw ModelRegistryError(code: "unknown_model", message: "no model named \(name) is registered", field: "name")
        }
        do {
            guard try await tasks.deleteModel(named: name) else {
                throw ModelRegistryError(code: "unknown_model", message: "no model named \(name) is registered", field: "name")
            }
            let shared = try await tasks.models().contains { $0.key == record.key }
            if !shared, record.key == ModelRecord.objectKey(sha256: record.sha256) { try await objects.delete(key: record.key) }
        } catch let error as ModelRegistryError {
            throw error
        } catch {
            throw ModelRegistryError(code: "storage_unavailable", message: "\(error)")
        }
        return record
    }

    /// Every registered model, by name.
    public func list() async throws(ModelRegistryError) -> [ModelRecord] {
        do { return try await tasks.models() } catch { throw Self.storage(error) }
    }

    private func existing(_ name: String) async throws(ModelRegistryError) -> ModelRecord? {
        do { return try await tasks.model(named: name) } catch { throw Self.storage(error) }
    }

    /// Hashes the file, then stores it under its digest (unless an object of that digest and
    /// size is there already: two names, one file).
    private func upload(file: URL, expected: String?) async throws(ModelRegistryError) -> (key: String, sha256: String, bytes: Int64, origin: String?) {
        let digest: (sha256: String, bytes: Int64)
        do { digest = try FileDigest.sha256(of: file) } catch {
            throw ModelRegistryError(code: "source_not_found", message: "cannot read \(file.path): \(error)", field: "file")
        }
        if let expected, expected != digest.sha256 {
            throw ModelRegistryError(
                code: "digest_mismatch", message: "the file's SHA-256 is \(digest.sha256), not \(expected); nothing was uploaded",
                field: "sha256")
        }
        let key = ModelRecord.objectKey(sha256: digest.sha256)
        do {
            if try await objects.size(key: key) != digest.bytes {
                try await objects.putFile(key: key, file: file, contentType: "application/octet-stream")
            }
            // What is stored is what was hashed: a file changed during the upload is caught here.
            guard let stored = try await objects.size(key: key), stored == digest.bytes else {
                try? await objects.delete(key: key)
                throw ModelRegistryError(code: "source_changed", message: "\(file.path) changed while it was uploaded", field: "file")
            }
        } catch let error as ModelRegistryError {
            throw error
        } catch {
            throw ModelRegistryError(code: "storage_unavailable", message: "\(error)")
        }
        return (key, digest.sha256, digest.bytes, nil)
    }

    /// Downloads `url` to a temporary file while hashing it, then uploads that file.
    private func download(_ url: String, expected: String?) async throws(ModelRegistryError) -> (key: String, sha256: String, bytes: Int64, origin: String?) {
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("sdq-model-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: temporary) }
        let writer: HashingFileWriter
        do { writer = try HashingFileWriter(url: temporary) } catch {
            throw ModelRegistryError(code: "storage_unavailable", message: "cannot create \(temporary.path): \(error)")
        }
        do {
            _ = try await fetcher.stream(url) { chunk in try writer.write(Data(chunk.readableBytesView)) }
            _ = try writer.finish()
        } catch let error as FetchError {
            writer.abandon()
            throw ModelRegistryError(code: "fetch_failed", message: "downloading \(url) failed: \(error.message)", field: "url")
        } catch {
            throw ModelRegistryError(code: "storage_unavailable", message: "writing the download failed: \(error)")
        }
        let stored = try await upload(file: temporary, expected: expected)
        return (stored.key, stored.sha256, stored.bytes, url)
    }

    private static func sourceName(_ source: Source) -> String {
        switch source {
        case .file(let path): path
        case .url(let url): url
        case .object(let key): key
        }
    }

    private static func storage(_ error: TransportError) -> ModelRegistryError {
        ModelRegistryError(code: "storage_unavailable", message: error.message)
    }
}
