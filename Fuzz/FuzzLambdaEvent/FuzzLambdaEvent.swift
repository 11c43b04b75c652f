import ApiLambda
import Foundation
import FuzzSupport

/// libFuzzer target: the Lambda event decoders (API Gateway 1.0 and 2.0, Function URL, direct
/// invocations) and the answer encoders. Any input must parse to an event or to nil.
enum FuzzLambdaEvent {
    static func check(_ data: Data) {
        guard let event = LambdaEvent.parse(data) else { return }
        _ = event.encode(APIResponse.json(200, data))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLambdaEvent(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    FuzzLambdaEvent.check(Data(bytes: bytes, count: count))
    return 0
}

#if FUZZING
@_cdecl("FuzzLambdaEvent_main")
public func fuzzLambdaEventMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzSupport.runDriver(argc: argc, argv: argv, fuzzLambdaEvent)
}
#else
@main struct ReplayLambdaEvent {
    static func main() throws { try FuzzSupport.replay(FuzzLambdaEvent.check) }
}
#endif
