import Foundation
import SDQMessages
import SDQPlatform
import Testing

/// Queue bodies kept from fuzzing (`Fuzz/Regressions/queue-message/`): protobuf bytes that must be
/// refused with `MessageDecodingError` (so the message goes to the dead-letter queue), never crash.
@Suite struct QueueMessageFuzzRegressionTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Regressions/queue-message")

    static var inputs: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted() }

    @Test(arguments: inputs)
    func malformedBodiesAreRefused(name: String) throws {
        let bytes = try Data(contentsOf: Self.folder.appendingPathComponent(name))
        #expect(throws: MessageDecodingError.self) {
            _ = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: bytes.base64EncodedString(), attributes: [:])
        }
        #expect(throws: MessageDecodingError.self) {
            _ = try MessageCodec.decode(Sdq_V1_TaskResult.self, body: String(decoding: bytes, as: UTF8.self), attributes: [:])
        }
    }
}
