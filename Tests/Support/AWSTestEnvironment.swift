import Foundation
import SDQAWS
import SDQAWSTransport
import SDQPlatform

/// Where AWS-transport tests find an AWS emulator: `SDQ_TEST_AWS_ENDPOINT` (what `.ci/run` sets
/// after starting moto), else a `moto_server` this test process starts on a free loopback port
/// (stopped by a watchdog when the test process exits). Nil when neither is available; the AWS
/// suites are then disabled and say so.
public enum AWSTestEnvironment {
    /// The emulator's endpoint, if any.
    public static let endpoint: String? = {
        let environment = ProcessInfo.processInfo.environment
        if let url = environment["SDQ_TEST_AWS_ENDPOINT"], !url.isEmpty { return url }
        guard environment["SDQ_TEST_NO_MOTO"] == nil, findExecutable("moto_server") != nil else { return nil }
        // moto with atomic DynamoDB writes (scripts/ci/moto_atomic.py says why), as CI runs it.
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/ci/moto_atomic.py").path
        return startMoto("python3 \(script)")
    }()

    /// Whether AWS-transport tests can run here.
    public static var available: Bool { endpoint != nil }

    /// The environment an AWS transport under test uses: the emulator for every service, static
    /// test credentials, no IMDS.
    public static func variables(extra: [String: String] = [:]) -> [String: String] {
        var variables = [
            "AWS_ENDPOINT_URL": endpoint ?? "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "6",
        ]
        variables.merge(extra) { $1 }
        return variables
    }

    /// A fresh stack name, so tests sharing one emulator never see each other's resources.
    public static func uniqueStack() -> String {
        "t" + String(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(10))
    }

    /// Starts a separate `moto_server` with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`
    /// to make it verify signatures); nil when moto is not installed. It waits for moto to answer
    /// without holding a thread (tests share a pool of as many threads as cores).
    public static func startPrivateMoto(environment: [String: String]) async -> String? {
        guard let moto = findExecutable("moto_server"), let port = launchMoto(moto, environment: environment) else { return nil }
        for _ in 0..<200 {
            if canConnect(port: port) { return "http://127.0.0.1:\(port)" }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    /// Whether `moto_server` is installed.
    public static var motoInstalled: Bool { findExecutable("moto_server") != nil }

    static func findExecutable(_ name: String) -> String? {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        return paths.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// 127.0.0.1:`port` as a socket address.
    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    public static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Serialises process launches: Foundation's `Process` is not safe to launch from two threads at once.
    static let launchLock = NSLock()

    /// Launches `process` under the shared launch lock (tests run in parallel).
    public static func launch(_ process: Process) throws {
        launchLock.lock()
        defer { launchLock.unlock() }
        try process.run()
    }

    /// Launches `process` and waits for it to exit without holding a thread: a blocking
    /// `waitUntilExit()` takes one of the few threads every test shares, and on a 2-core machine
    /// two of them stall the whole suite.
    /// `input`, when given, is written to the process's standard input (a `Pipe`), which is then
    /// closed; it must fit in the pipe's buffer.
    public static func runToExit(_ process: Process, input: Data? = nil) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in continuation.resume() }
            do {
                try launch(process)
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
                return
            }
            if let input, let pipe = process.standardInput as? Pipe {
                pipe.fileHandleForWriting.write(input)
                try? pipe.fileHandleForWriting.close()
            }
        }
    }

    /// The shared emulator, started once before the first AWS test (blocking: it runs inside a
    /// `static let` initialiser).
    static func startMoto(_ executable: String) -> String? {
        guard let port = launchMoto(executable, environment: [:]) else { return nil }
        // Wait until it answers (moto starts in about a second).
        for _ in 0..<200 {
            if canConnect(port: port) { return "http://127.0.0.1:\(port)" }
            usleep(100_000)
        }
        return nil
    }

    /// Launches moto on a free port, returning the port. moto runs while this process lives: the
    /// loop stops it once we are gone, with SIGKILL (the test process may run with SIGTERM
    /// blocked, and children inherit the mask) and by its command line too, because the
    /// `moto_server` found on the PATH may be a wrapper whose Python outlives the wrapper.
    static func launchMoto(_ executable: String, environment: [String: String]) -> Int? {
        guard let port = freePort() else { return nil }
        let parent = ProcessInfo.processInfo.processIdentifier
        let script = "\(executable) -H 127.0.0.1 -p \(port) >/dev/null 2>&1 & m=$!; "
            + "while kill -0 \(parent) 2>/dev/null; do sleep 1; done; kill -KILL $m 2>/dev/null; "
            + "pkill -KILL -f -- '-H 127.0.0.1 -p \(port)$'"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? launch(process)) != nil else { return nil }
        return port
    }

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

/// The transports the shared scenario tests run over.
public enum TransportKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case embedded, aws
    public var description: String { rawValue }

    /// Embedded always; AWS when an emulator is available.
    public static var available: [TransportKind] { AWSTestEnvironment.available ? [.embedded, .aws] : [.embedded] }
}

/// A provisioned stack on either transport, isolated from every other test.
public struct StackFixture: Sendable {
    public let kind: TransportKind
    public let directory: TemporaryDirectory
    public let context: StackContext
    public var transport: any Transport { context.transport }
    public var names: ResourceNames { context.names }

    public static func make(_ kind: TransportKind, pools: PoolConfiguration = .builtIn) async throws -> StackFixture {
        let directory = TemporaryDirectory()
        switch kind {
        case .embedded:
            let embedded = try await EmbeddedFixture.make(pools: pools, directory: directory)
            return StackFixture(kind: kind, directory: directory, context: embedded.context)
        case .aws:
            let names = ResourceNames(stack: AWSTestEnvironment.uniqueStack())
            let transport = AWSTransport(environment: .init(AWSTestEnvironment.variables()), names: names, logger: testLogger())
            let context = StackContext(transport: transport, names: names, pools: pools)
            try await transport.provision(context.topology)
            return StackFixture(kind: kind, directory: directory, context: context)
        }
    }

    public func queue(_ name: String) -> any MessageQueue { transport.queue(named: name) }
}
