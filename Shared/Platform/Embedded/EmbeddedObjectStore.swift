import Crypto
import Foundation

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

    func get(key: String) async throws(TransportError) -> StoredObject? {
        let url = try fileURL(for: key)
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        let rows = try await database.query(
            "SELECT content_type FROM objects WHERE key = ?", [.text("\(bucket)/\(key)")])
        let contentType = rows.first?.text("content_type") ?? "application/octet-stream"
        return StoredObject(key: key, data: data, contentType: contentType)
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
