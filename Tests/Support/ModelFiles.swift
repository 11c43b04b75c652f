import Crypto
import Foundation
import SDQPlatform

/// Model files for tests: a small file in the safetensors layout (an 8-byte little-endian
/// header length, a JSON header, then tensor bytes), unique by `tag`, of exactly `bytes` bytes.
public func safetensorsFile(bytes: Int, tag: String) -> Data {
    let header = Data(#"{"__metadata__":{"tag":"\#(tag)"}}"#.utf8)
    var data = Data()
    var length = UInt64(header.count).littleEndian
    withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
    data.append(header)
    var state = UInt64(truncatingIfNeeded: tag.hashValue) | 1
    while data.count < bytes {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        data.append(UInt8(truncatingIfNeeded: state >> 33))
    }
    return data.prefix(max(bytes, data.count))
}

/// Bytes that are not a model file of any kind (no header a loader can read).
public func corruptModelFile(bytes: Int) -> Data {
    Data((0..<bytes).map { UInt8(truncatingIfNeeded: 0xff &- $0 % 7) })
}

/// SHA-256 as lower-case hex.
public func sha256Hex(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}

/// Registers `data` as model `name` directly in the store and bucket of `context` (what
/// `sdq models add` leaves behind), returning the record.
@discardableResult
public func registerModel(
    _ name: String, kind: ModelRecord.Kind = .checkpoint, family: String = "sdxl", data: Data, in context: StackContext
) async throws -> ModelRecord {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("model-\(UUID().uuidString)")
    try data.write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    return try await ModelRegistry(tasks: context.transport.tasks, objects: context.transport.objects)
        .register(name: name, kind: kind, family: family, source: .file(file.path))
}

/// Counts what is read from an object store (the peer a model cache downloads from).
public final class CountingObjectStore: ObjectStore, @unchecked Sendable {
    public let base: any ObjectStore
    private let lock = NSLock()
    private var _reads = 0
    private var _bytes: Int64 = 0

    public init(_ base: any ObjectStore) { self.base = base }

    public var reads: Int { lock.withLock { _reads } }
    public var bytesRead: Int64 { lock.withLock { _bytes } }

    public var bucket: String { base.bucket }
    public func put(key: String, data: Data, contentType: String) async throws(TransportError) {
        try await base.put(key: key, data: data, contentType: contentType)
    }
    public func get(key: String) async throws(TransportError) -> StoredObject? { try await base.get(key: key) }
    public func exists(key: String) async throws(TransportError) -> Bool { try await base.exists(key: key) }
    public func delete(key: String) async throws(TransportError) { try await base.delete(key: key) }
    public func size(key: String) async throws(TransportError) -> Int64? { try await base.size(key: key) }
    public func read(key: String, offset: Int64, length: Int) async throws(TransportError) -> Data? {
        let data = try await base.read(key: key, offset: offset, length: length)
        lock.withLock {
            _reads += 1
            _bytes += Int64(data?.count ?? 0)
        }
        return data
    }
    public func putFile(key: String, file: URL, contentType: String) async throws(TransportError) {
        try await base.putFile(key: key, file: file, contentType: contentType)
    }
}
