import Foundation
import SDQMessages
import SwiftProtobuf
import Testing

@Suite struct MessagesTests {
    @Test func generationTaskRoundTrips() throws {
        var task = Sdq_V1_GenerationTask()
        task.id = "01abc"
        task.kind = .img2Img
        task.parameters.prompt = "a lighthouse at dusk"
        task.parameters.seed = 4_294_967_295
        task.parameters.width = 512
        task.inputs = [Sdq_V1_ObjectRef.with { $0.key = "uploads/x"; $0.size = 10 }]
        task.runtimeRequest = Data(#"{"x":1}"#.utf8)
        task.priority = .high
        let bytes: Data = try task.serializedBytes()
        let decoded = try Sdq_V1_GenerationTask(serializedBytes: bytes)
        #expect(decoded == task)
        #expect(decoded.parameters.seed == 4_294_967_295)
    }

    @Test func unknownFieldsFromNewerWritersAreTolerated() throws {
        var result = Sdq_V1_TaskResult()
        result.id = "t1"
        result.outcome = .succeeded
        var bytes: Data = try result.serializedBytes()
        // Field 999, varint 1: what a newer schema might add.
        bytes.append(contentsOf: [0xB8, 0x3E, 0x01])
        let decoded = try Sdq_V1_TaskResult(serializedBytes: bytes)
        #expect(decoded.id == "t1")
        #expect(decoded.outcome == .succeeded)
    }

    @Test func messageNamesCarryTheSchemaVersion() {
        #expect(Sdq_V1_GenerationTask.protoMessageName == "sdq.v1.GenerationTask")
        #expect(Sdq_V1_TaskResult.protoMessageName == "sdq.v1.TaskResult")
    }
}
