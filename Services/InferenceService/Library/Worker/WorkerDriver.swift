import ServiceLifecycle
import SDQPlatform
import Synchronization

/// What the worker's pipeline does to the world. ``WorkerDriver`` performs ``WorkerMachine``'s
/// actions through it; the inference worker implements it with its queue, store and runtime, and
/// tests with doubles on a test clock.
protocol WorkerEffects: Sendable {
    associatedtype Message: Sendable
    associatedtype Job: Sendable
    associatedtype Outcome: Sendable

    /// One long poll for a message (empty when none came).
    func receive() async throws -> [WorkerMachine<Message, Job, Outcome>.Incoming]
    /// Decodes a message and fetches its inputs: the job and the model it wants, or what to do
    /// with a message settled here.
    func prepare(_ message: Message) async -> Result<(job: Job, model: String), Settled>
    /// Runs a job, recording the runtime's own start and end in `window`; nil when graceful
    /// shutdown stopped it (its message is handed back).
    func run(_ job: Job, window: RuntimeWindow, exclusive: Bool) async -> Outcome?
    /// Stores and reports an outcome; says what becomes of its message.
    func settle(_ outcome: Outcome) async -> MessageDisposition
    /// Deletes a message or changes its visibility (errors are the effect's to log).
    func release(_ receipt: String, _ disposition: MessageDisposition) async
    /// Extends a message's visibility by the visibility timeout.
    func extend(_ receipt: String) async throws
    /// A receive or an extension failed; a lease was lost. For logs and metrics.
    func report(_ trouble: WorkerTrouble)
}

/// A message settled before it reached the runtime, and what to do with it.
struct Settled: Error, Sendable, Equatable {
    var disposition: MessageDisposition
}

/// Something that went wrong in the pipeline without stopping it.
enum WorkerTrouble: Sendable {
    case receiveFailed(any Error)
    case extendFailed(any Error)
    /// The lease on these tasks' messages ran out before an extension succeeded.
    case leaseLost([String])
    /// Not a trouble: graceful shutdown handed these messages back to the queue (visible at once).
    case handedBack(Int)
}

/// Runs a ``WorkerMachine``: feeds it events and performs its actions, each in a child task that
/// reports back with the next event. The machine sits behind a lock; actions leave it in the order
/// it produced them. The heartbeat is one more child: it sleeps on the service clock until the
/// next lease is due and sends ``WorkerMachine/Event/tick``. Graceful shutdown (observed here)
/// becomes ``WorkerMachine/Event/shutdown``; a run in progress is stopped by it through
/// `cancelWhenGracefulShutdown`, a receive in flight is not (it is left to answer, and what it
/// brings is handed back).
final class WorkerDriver<Effects: WorkerEffects>: Sendable {
    typealias Machine = WorkerMachine<Effects.Message, Effects.Job, Effects.Outcome>

    let effects: Effects
    let clock: ServiceClock
    let heartbeat: Duration
    private let machine: Mutex<Machine>
    private let actions: AsyncStream<Machine.Action>
    private let output: AsyncStream<Machine.Action>.Continuation

    init(effects: Effects, limits: Machine.Limits, visibility: Duration, heartbeat: Duration, clock: ServiceClock) {
        self.effects = effects
        self.clock = clock
        self.heartbeat = heartbeat
        machine = Mutex(Machine(limits: limits, visibility: visibility, heartbeat: heartbeat))
        (actions, output) = AsyncStream.makeStream(of: Machine.Action.self)
    }

    /// Feeds one event; its actions are queued for ``run()`` in order.
    func send(_ event: Machine.Event) {
        let now = clock.elapsed()
        machine.withLock { machine in
            for action in machine.handle(event, now: now) { output.yield(action) }
        }
    }

    /// Runs the pipeline until graceful shutdown has drained it (every message still held handed
    /// back) or the calling task is cancelled. Returns, when cancelled, what is still to be done
    /// with each receipt it held (see `WorkerMachine.stop()`); empty after a graceful shutdown.
    func run() async -> [(receipt: String, disposition: MessageDisposition)] {
        let unfinished = await withDiscardingTaskGroup { group -> [(receipt: String, disposition: MessageDisposition)] in
            group.addTask { await self.heartbeatLoop() }
            group.addTask {
                do { try await gracefulShutdown() } catch { return }
                self.send(.shutdown)
            }
            send(.start)
            for await action in actions {
                if case .finish(let receipts) = action {
                    for receipt in receipts { await effects.release(receipt, .retry(after: .zero)) }
                    if !receipts.isEmpty { effects.report(.handedBack(receipts.count)) }
                    break
                }
                group.addTask { await self.perform(action) }
            }
            // Stopped before anything reports late, which changes nothing after this.
            let unfinished = machine.withLock { $0.stop() }
            group.cancelAll()
            return unfinished
        }
        output.finish()
        return unfinished
    }

    private func perform(_ action: Machine.Action) async {
        switch action {
        case .receive(let delay):
            if delay > .zero {
                // A back-off ends early on shutdown; the receive it led to is then not made.
                let slept: Bool = await cancelWhenGracefulShutdown { [clock] in
                    (try? await clock.sleepFor(delay)) != nil
                }
                if !slept {
                    send(.received([]))
                    return
                }
            }
            do {
                send(.received(try await effects.receive()))
            } catch {
                if Task.isCancelled { return }
                effects.report(.receiveFailed(error))
                send(.receiveFailed)
            }
        case .prepare(let receipt, let message):
            switch await effects.prepare(message) {
            case .success(let ready): send(.prepared(receipt: receipt, ready.job, model: ready.model))
            case .failure(let settled): send(.settledEarly(receipt: receipt, settled.disposition))
            }
        case .run(let receipt, let job, let exclusive):
            let window = RuntimeWindow()
            window.whenSubmitted { self.send(.submitted(receipt: receipt)) }
            // The runtime's place is free once it is done with the job, not once the worker has
            // recorded it (its `running` mark may still be on its way).
            window.whenClosed { self.send(.runtimeReleased(receipt: receipt)) }
            let outcome = await cancelWhenGracefulShutdown { [effects] in
                await effects.run(job, window: window, exclusive: exclusive)
            }
            window.close()
            send(.ran(receipt: receipt, outcome))
        case .settle(let receipt, let outcome):
            send(.settled(receipt: receipt, await effects.settle(outcome)))
        case .release(let receipt, let disposition):
            await effects.release(receipt, disposition)
            send(.released(receipt: receipt))
        case .extend(let receipts, let at):
            for receipt in receipts {
                do {
                    try await effects.extend(receipt)
                    send(.extended(receipt: receipt, at: at))
                } catch {
                    effects.report(.extendFailed(error))
                }
            }
        case .lost(let labels):
            effects.report(.leaseLost(labels))
        case .finish:
            break
        }
    }

    /// Sleeps until the next lease is due (at most one heartbeat, so a lease added meanwhile is
    /// not missed), then ticks; until cancelled.
    private func heartbeatLoop() async {
        while !Task.isCancelled {
            let now = clock.elapsed()
            let wake = machine.withLock { $0.nextTick(now: now, interval: heartbeat) }
            do { try await clock.sleepFor(max(.zero, wake - now)) } catch { return }
            send(.tick)
        }
    }
}
