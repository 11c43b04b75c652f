import Foundation

/// What the fuzz targets share: libFuzzer's driver (under `-sanitize=fuzzer`, SwiftPM routes the
/// executable's `main` to `<Target>_main`, which hands over to libFuzzer here) and the replay of
/// saved inputs in a normal build.
public enum FuzzSupport {
    public typealias TestOneInput = @convention(c) (UnsafePointer<UInt8>, Int) -> CInt

    #if FUZZING
    /// Runs libFuzzer's driver with the process arguments.
    public static func runDriver(
        argc: CInt, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ test: TestOneInput
    ) -> CInt {
        var argc = argc
        var argv = argv
        return LLVMFuzzerRunDriver(&argc, &argv, test)
    }
    #endif

    /// Feeds every file named on the command line to `check` (replaying kept inputs).
    public static func replay(_ check: (Data) -> Void) throws {
        for path in CommandLine.arguments.dropFirst() { check(try Data(contentsOf: URL(fileURLWithPath: path))) }
    }
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ test: FuzzSupport.TestOneInput
) -> CInt
#endif
