import Crypto
import Foundation

/// SHA-256 of files and objects read a piece at a time (a model is gigabytes; nothing holds it whole).
public enum FileDigest {
    /// How much is read at once.
    public static let chunkSize = 8 << 20

    /// The SHA-256 (lower-case hex) and size of the file at `url`.
    public static func sha256(of url: URL) throws -> (sha256: String, bytes: Int64) {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        var total: Int64 = 0
        while let chunk = try handle.read(upToCount: chunkSize), !chunk.isEmpty {
            hasher.update(data: chunk)
            total += Int64(chunk.count)
        }
        return (hex(hasher.finalize()), total)
    }

    /// The SHA-256 and size of object `key`, read in ranges; nil when it does not exist.
    public static func sha256(ofObject key: String, in store: any ObjectStore) async throws(TransportError) -> (sha256: String, bytes: Int64)? {
        guard let size = try await store.size(key: key) else { return nil }
        var hasher = SHA256()
        var offset: Int64 = 0
        while offset < size {
            guard let chunk = try await store.read(key: key, offset: offset, length: chunkSize) else { return nil }
            guard !chunk.isEmpty else { break }
            hasher.update(data: chunk)
            offset += Int64(chunk.count)
        }
        return (hex(hasher.finalize()), offset)
    }

    /// Lower-case hex of a digest.
    public static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// Writes a stream to a file while hashing it (downloads that must be checked as they land).
public final class HashingFileWriter: @unchecked Sendable {
    private let lock = NSLock()
    private let handle: FileHandle
    private var hasher = SHA256()
    private var total: Int64 = 0

    /// Creates (truncates) the file at `url`.
    public init(url: URL) throws {
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
        handle = try FileHandle(forWritingTo: url)
    }

    /// Appends `data`.
    public func write(_ data: Data) throws {
        try lock.withLock {
            try handle.write(contentsOf: data)
            hasher.update(data: data)
            total += Int64(data.count)
        }
    }

    /// Flushes and closes the file; its SHA-256 and size.
    public func finish() throws -> (sha256: String, bytes: Int64) {
        try lock.withLock {
            try handle.synchronize()
            try handle.close()
            return (FileDigest.hex(hasher.finalize()), total)
        }
    }

    /// Closes the file without a digest (a failed download).
    public func abandon() { lock.withLock { try? handle.close() } }
}
