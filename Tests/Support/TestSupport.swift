import Foundation
import Logging
import SDQPlatform
import ServiceLifecycle
import SDQStack
import Synchronization

/// A fresh directory under the system temporary directory, removed when released.
public final class TemporaryDirectory: Sendable {
    public let url: URL
    public var path: String { url.path }

    public init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("sdq-test-\(UUID().uuidString)", isDirectory: true)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// A quiet logger for tests (set `SDQ_TEST_LOG=debug` to see the services talk).
public func testLogger(_ label: String = "test") -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["SDQ_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}

/// An embedded stack in a temporary directory, provisioned with the standard topology.
public struct EmbeddedFixture: Sendable {
    public let directory: TemporaryDirectory
    public let transport: EmbeddedTransport
    public let context: StackContext

    public static func make(
        pools: PoolConfiguration = .builtIn, directory: TemporaryDirectory = TemporaryDirectory(),
        pollInterval: Duration = .milliseconds(50), time: EpochTime = .system
    ) async throws -> EmbeddedFixture {
        let names = ResourceNames(stack: "test")
        let transport = try await EmbeddedTransport.open(
            directory: directory.path, names: names, logger: testLogger(), crossProcessPollInterval: pollInterval, time: time)
        let context = StackContext(transport: transport, names: names, pools: pools)
        try await transport.provision(context.topology)
        return EmbeddedFixture(directory: directory, transport: transport, context: context)
    }

    /// A queue of this stack.
    public func queue(_ name: String) -> any MessageQueue { transport.queue(named: name) }
}

/// Pools with short queue timings, for fault tests.
public func fastPools(
    _ pools: [PoolSpec] = [PoolSpec(name: "default", runtime: "emulator", models: [PoolConfiguration.emulatorModel])],
    maxReceiveCount: Int = 3, visibilitySeconds: Int = 2
) throws -> PoolConfiguration {
    var queues = QueueSettings()
    queues.maxReceiveCount = maxReceiveCount
    queues.workerVisibilityTimeoutSeconds = visibilitySeconds
    return try PoolConfiguration(pools: pools, queues: queues)
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. A condition that
/// throws counts as not holding yet.
public func eventually(
    timeout: Duration = .seconds(15), interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: interval)
    }
    return (try? await condition()) == true
}

/// A task record as the API would create it.
public func makeRecord(id: String = TaskID.generate(), status: TaskStatus = .queued, pool: String = "default") -> TaskRecord {
    TaskRecord(
        id: id, status: status, pool: pool, model: PoolConfiguration.emulatorModel, seed: 1, width: 64, height: 64,
        timings: TaskTimings(submittedAt: EpochClock.nowMillis()), expiresAt: EpochClock.nowMillis() + 3_600_000)
}

/// Hands the bound port from a server's `onListening` callback to the test.
public actor PortBox {
    private var port: Int?
    private var waiters: [CheckedContinuation<Int, Never>] = []

    public init() {}

    public func set(_ value: Int) {
        port = value
        for waiter in waiters { waiter.resume(returning: value) }
        waiters.removeAll()
    }

    public func wait() async -> Int {
        if let port { return port }
        return await withCheckedContinuation { waiters.append($0) }
    }
}

/// Runs `services` in a service group while `body` runs, then shuts them down gracefully (as
/// SIGTERM would) and waits for them to stop.
public func whileRunning<T: Sendable>(
    _ services: [any Service], _ body: @Sendable (RunningServices) async throws -> T
) async throws -> T {
    let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: testLogger()))
    let running = RunningServices(group: group)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            let value = try await body(running)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return value
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

/// Lets a test stop the services early (a graceful stop, like SIGTERM).
public struct RunningServices: Sendable {
    let group: ServiceGroup
    public func stop() async { await group.triggerGracefulShutdown() }
}

/// Collects values across polling closures (tests capture this instead of a `var`).
public actor Accumulator<Element: Sendable> {
    public private(set) var items: [Element] = []
    public init() {}
    public func append(_ new: [Element]) { items += new }
    public var count: Int { items.count }
}

/// A file or folder under `Tests/Fixtures/` (the repository's own test data: see its README for
/// where each third-party file came from and its licence).
public func fixtureURL(_ relativePath: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(relativePath)
}

/// A file of the reference guidance's sample requests, `Tests/Fixtures/anchor-v1alpha2/NAME`.
public func referenceSample(_ name: String) throws -> Data {
    try Data(contentsOf: fixtureURL("anchor-v1alpha2/\(name)"))
}

/// How often a loop went to sleep on a wrapped test clock, and a wait for the next time: a test
/// advances the clock, then waits until the loop has done its work and sleeps again.
public actor SleepCounter {
    public private(set) var count = 0
    private var waiters: [(above: Int, continuation: CheckedContinuation<Void, Never>)] = []

    public init() {}

    public func increment() {
        count += 1
        let ready = waiters.filter { $0.above < count }
        waiters.removeAll { $0.above < count }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Returns once the count is above `value`.
    public func wait(above value: Int) async {
        if count > value { return }
        await withCheckedContinuation { waiters.append((value, $0)) }
    }
}

extension ServiceClock {
    /// `clock` (a test clock) seen through `sleeps`: every sleep a loop starts on it is counted
    /// first, so a test can wait until the loop is asleep again after advancing the clock.
    public static func counting<C: Clock<Duration>>(_ clock: C, sleeps: SleepCounter) -> ServiceClock {
        let base = ServiceClock(clock)
        return ServiceClock(elapsed: base.elapsed) { duration in
            await sleeps.increment()
            try await base.sleepFor(duration)
        }
    }
}

/// A clock a test moves by hand, as a wall clock (``EpochTime``: visibility timeouts lapse when
/// the test says) and as a service clock (cache ages; its sleeps return at once).
public final class ManualClock: Sendable {
    private let millis: Mutex<Int64>
    private let start: Int64

    public init(start: Int64 = EpochClock.nowMillis()) {
        millis = Mutex(start)
        self.start = start
    }

    public var time: EpochTime { EpochTime { self.millis.withLock { $0 } } }

    public var service: ServiceClock {
        ServiceClock(elapsed: { .milliseconds(self.millis.withLock { $0 } - self.start) }, sleepFor: { _ in })
    }

    public func advance(by duration: Duration) { millis.withLock { $0 += duration.milliseconds } }
}
