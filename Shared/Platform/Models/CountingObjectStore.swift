import Foundation

/// An object store that counts what is read through it (ranged reads and their bytes): how a
/// benchmark or test measures downloads at the store, the peer a model cache reads from.
public final class CountingObjectStore: ObjectStore, @unchecked Sendable {
    public let base: any ObjectStore
    private let lock = NSLock()
    private var counts: (reads: Int, bytes: Int64) = (0, 0)

    public init(_ base: any ObjectStore) { self.base = base }

    /// Ranged reads so far.
    public var reads: Int { lock.withLock { counts.reads } }
    /// Bytes they returned.
    public var bytesRead: Int64 { lock.withLock { counts.bytes } }

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
            counts.reads += 1
            counts.bytes += Int64(data?.count ?? 0)
        }
        return data
    }
    public func putFile(key: String, file: URL, contentType: String) async throws(TransportError) {
        try await base.putFile(key: key, file: file, contentType: contentType)
    }
}
