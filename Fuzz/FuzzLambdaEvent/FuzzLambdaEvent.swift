import ApiLambda
import Foundation

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

#if !FUZZING
@main struct ReplayLambdaEvent {
    static func main() throws {
        for path in CommandLine.arguments.dropFirst() { FuzzLambdaEvent.check(try Data(contentsOf: URL(fileURLWithPath: path))) }
    }
}
#endif
