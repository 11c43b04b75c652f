import ApiLambda
import Foundation
import FuzzSupport
import SDQPlatform

/// libFuzzer target: the API's request decoders (`POST /v1/tasks` and `POST /v1alpha2` bodies).
/// Any input must end in a task or an `APIError`, never a crash. Built by `scripts/fuzz.sh`; a
/// normal build replays the files given as arguments (`Fuzz/Regressions/api-request/`).
enum FuzzAPIRequest {
    static let pools = PoolConfiguration.builtIn
    static let limits = RequestLimits()

    static func check(_ data: Data) {
        _ = try? TaskSubmission.parse(data, limits: limits, pools: pools)
        _ = try? TaskSubmission.parseReference(data, limits: limits, pools: pools)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPIRequest(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    FuzzAPIRequest.check(Data(bytes: bytes, count: count))
    return 0
}

#if FUZZING
@_cdecl("FuzzAPIRequest_main")
public func fuzzAPIRequestMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzSupport.runDriver(argc: argc, argv: argv, fuzzAPIRequest)
}
#else
@main struct ReplayAPIRequest {
    static func main() throws { try FuzzSupport.replay(FuzzAPIRequest.check) }
}
#endif
