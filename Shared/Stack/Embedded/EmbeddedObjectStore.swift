import Crypto
import Foundation
import SDQPlatform

/// Objects as files in a folder beside the database (`SDQ_DATA_DIR/objects/<bucket>/<key>`), with
/// their metadata in the database. Writes go to a temporary file renamed into place, so a reader
/// never sees half an object.
struct EmbeddedObjectStore: ObjectStore {
    let bucket: String
    let root: URL
    let database: EmbeddedDatabase

    private func fileURL(for key: String) throws(TransportError) -> URL {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, !key.hasPrefix("/"), !parts.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty })
        else { throw TransportError(code: "invalid_key", message: "invalid object key \(key)") }
        return root.appendingPathComponent(bucket, isDirectory: true).appendingPathComponent(key)
    }

    func put(key: String, data: Data, contentType: String) async throws(TransportError) {
        let url = try fileURL(for: key)
        do {
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let temporary = url.deletingLastPathComponent()
                .appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
            try data.write(to: temporary)
            // rename(2) replaces the target atomically.
            guard rename(temporary.path, url.path) == 0 else {
                let code = errno
                try? FileManager.default.removeItem(at: temporary)
                throw TransportError.storage("cannot move object \(key) into place: errno \(code)")
            }
        } catch {
            throw .storage("cannot write object \(key): \(error)")
        }
        try await database.query(
            "INSERT OR REPLACE INTO objects (key, content_type, size, created_at) VALUES (?, ?, ?, ?)",
            [.text("\(bucket)/\(key)"), .text(contentType), .int(data.count), .int(EpochClock.nowMillis())])
    }

    /// Links the staged file into place with link(2), which fails when the target exists, so two
    /// racing uploads cannot both win and an upload never replaces an object.
    func createFromFile(key: String, file: URL, contentType: String) async throws(TransportError) -> Bool? {
        let url = try fileURL(for: key)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw .storage("cannot create the folder of \(key): \(error)")
        }
        guard link(file.path, url.path) == 0 else {
            let code = errno
            if code == EEXIST { return false }
            throw .storage("cannot move upload \(key) into place: errno \(code)")
        }
        unlink(file.path)
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
        do {
            try await database.query(
                "INSERT OR REPLACE INTO objects (key, content_type, size, created_at) VALUES (?, ?, ?, ?)",
                [.text("\(bucket)/\(key)"), .text(contentType), .int(size), .int(EpochClock.nowMillis())])
        } catch {
            // Not recorded, not kept: the same URL may try again.
            unlink(url.path)
            throw error
        }
        return true
    }

    /// Removes what a killed writer left: `.…tmp` files beside objects and files in `staging`
    /// not touched for `olderThan` (other processes sharing the folder may be writing newer ones;
    /// a write takes far less). Called when the transport opens; walks the object tree once.
    static func removeLeftovers(
        under root: URL, staging: URL, olderThan age: TimeInterval = 300, now: Date = Date()
    ) -> Int {
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.contentModificationDateKey])
        else { return 0 }
        var removed = 0
        for case let url as URL in walker {
            let name = url.lastPathComponent
            let staged = url.deletingLastPathComponent().standardizedFileURL.path == staging.standardizedFileURL.path
            let modified = (try? url.resourceValues(forKeys: [.contentModificationDateKey]))?.contentModificationDate ?? now
            if (name.hasPrefix(".") && name.hasSuffix(".tmp")) || staged, now.timeIntervalSince(modified) >= age {
                if (try? FileManager.default.removeItem(at: url)) != nil { removed += 1 }
            }
        }
        return removed
    }

    /// The folder in the bucket's folder (so on the same file system, for link(2)) where uploads
    /// are streamed before they are linked into place. No object key has a `.staging` segment.
    static let stagingFolder = ".staging"

    func get(key: String) async throws(TransportError) -> StoredObject? {
        let url = try fileURL(for: key)
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        let rows = try await database.query(
            "SELECT content_type FROM objects WHERE key = ?", [.text("\(bucket)/\(key)")])
        let contentType = rows.first?.text("content_type") ?? "application/octet-stream"
        return StoredObject(key: key, data: data, contentType: contentType)
    }

    func size(key: String) async throws(TransportError) -> Int64? {
        let url = try fileURL(for: key)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else { return nil }
        return (attributes[.size] as? NSNumber)?.int64Value
    }

    func read(key: String, offset: Int64, length: Int) async throws(TransportError) -> Data? {
        let url = try fileURL(for: key)
        guard let handle = try? FileHandle(forReadingFrom: url) else { return nil }
        defer { try? handle.close() }
        do {
            try handle.seek(toOffset: UInt64(max(0, offset)))
            return try handle.read(upToCount: length) ?? Data()
        } catch {
            throw .storage("cannot read object \(key): \(error)")
        }
    }

    /// Copies the file beside the object's place, then renames it there (atomic).
    func putFile(key: String, file: URL, contentType: String) async throws(TransportError) {
        let url = try fileURL(for: key)
        let size: Int64
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
            try FileManager.default.copyItem(at: file, to: temporary)
            size = (try FileManager.default.attributesOfItem(atPath: temporary.path)[.size] as? NSNumber)?.int64Value ?? 0
            guard rename(temporary.path, url.path) == 0 else {
                let code = errno
                try? FileManager.default.removeItem(at: temporary)
                throw TransportError.storage("cannot move object \(key) into place: errno \(code)")
            }
        } catch let error as TransportError {
            throw error
        } catch {
            throw .storage("cannot write object \(key): \(error)")
        }
        try await database.query(
            "INSERT OR REPLACE INTO objects (key, content_type, size, created_at) VALUES (?, ?, ?, ?)",
            [.text("\(bucket)/\(key)"), .text(contentType), .int(Int(size)), .int(EpochClock.nowMillis())])
    }

    func exists(key: String) async throws(TransportError) -> Bool {
        FileManager.default.fileExists(atPath: try fileURL(for: key).path)
    }

    func delete(key: String) async throws(TransportError) {
        let url = try fileURL(for: key)
        try? FileManager.default.removeItem(at: url)
        try await database.query("DELETE FROM objects WHERE key = ?", [.text("\(bucket)/\(key)")])
    }
}
