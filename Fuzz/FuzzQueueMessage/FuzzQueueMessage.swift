import Foundation
import FuzzSupport
import SDQMessages
import SDQPlatform

/// libFuzzer target: the queue message decoder, for every message the services consume. The input
/// is tried both as the body text itself and as the protobuf bytes inside a valid base64 body.
enum FuzzQueueMessage {
    static func check(_ data: Data) {
        let attributes = [MessageAttribute.contentType: "application/x-protobuf"]
        for body in [String(decoding: data, as: UTF8.self), data.base64EncodedString()] {
            _ = try? MessageCodec.decode(Sdq_V1_GenerationTask.self, body: body, attributes: attributes)
            _ = try? MessageCodec.decode(Sdq_V1_TaskResult.self, body: body, attributes: attributes)
            _ = try? MessageCodec.decode(Sdq_V1_WebhookEvent.self, body: body, attributes: attributes)
            _ = try? MessageCodec.decode(Sdq_V1_GenerationTask.self, body: body, attributes: [:])
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQueueMessage(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    FuzzQueueMessage.check(Data(bytes: bytes, count: count))
    return 0
}

#if FUZZING
@_cdecl("FuzzQueueMessage_main")
public func fuzzQueueMessageMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzSupport.runDriver(argc: argc, argv: argv, fuzzQueueMessage)
}
#else
@main struct ReplayQueueMessage {
    static func main() throws { try FuzzSupport.replay(FuzzQueueMessage.check) }
}
#endif
