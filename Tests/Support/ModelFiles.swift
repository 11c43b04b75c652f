import Crypto
import Foundation
import SDQPlatform

/// Model files for tests: a small file in the safetensors layout (an 8-byte little-endian
/// header length, a JSON header, then tensor bytes), unique by `tag`, of exactly `bytes` bytes.
public func safetensorsFile(bytes: Int, tag: String) -> Data {
    let header = Data(#"{"__metadata__":{"tag":"\#(tag)"}}"#.utf8)
    var data = Data(capacity: max(bytes, header.count + 8))
    var length = UInt64(header.count).littleEndian
    withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
    data.append(header)
    // The tensor bytes: cheap to make (tests make many files), unique through the header's tag.
    data.append(Data(repeating: UInt8(truncatingIfNeeded: tag.utf8.reduce(0) { $0 &+ Int($1) }), count: max(0, bytes - data.count)))
    return data
}

/// Bytes that are not a model file of any kind (no header a loader can read: its length field
/// is larger than the file).
public func corruptModelFile(bytes: Int) -> Data {
    Data(repeating: 0xab, count: bytes)
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
