import SDQPlatform

/// The inference worker's whole pipeline as a value: events in, actions out, no I/O and no clock
/// (times are offsets the driver passes in). ``WorkerDriver`` performs the actions and reports
/// what they did as events; tests drive the machine with plain values.
///
/// A message moves through `receiving → preparing → ready → at the runtime → awaiting upload →
/// uploading → released`. The machine keeps the limits that used to be three semaphores:
/// - at most `prefetch + 1 + queueAhead` messages between a receive and an upload slot
///   (receiving, preparing, ready, running, awaiting upload), so no more is received than the
///   runtime can take soon;
/// - at most `1 + queueAhead` jobs at the runtime, the next handed over only once the one before
///   it was submitted (so they reach the runtime in order); a job that may make the runtime load
///   another model (the first, or a model change) takes every runtime place, so a model switch
///   never lands under a running job;
/// - at most `uploads` settles at once.
///
/// It also holds the leases (``LeaseMachine``): each received message is extended on its own
/// heartbeat until it is released. A message whose work stops short (received or prepared during
/// shutdown, a run stopped by it) keeps its lease. On graceful shutdown the machine receives
/// nothing more and starts no job; what ran on is uploaded, and once nothing is in flight every
/// message still leased is handed back in one ``Action/finish(handBack:)``.
struct WorkerMachine<Message: Sendable, Job: Sendable, Outcome: Sendable>: Sendable {
    /// The pipeline's limits.
    struct Limits: Sendable, Equatable {
        /// Messages received and prepared ahead of the runtime.
        var prefetch: Int
        /// Jobs waiting in the runtime's own queue behind the running one.
        var queueAhead: Int
        /// Settles (uploads and results) at once.
        var uploads: Int

        var pipeline: Int { prefetch + 1 + queueAhead }
        var runtimePlaces: Int { 1 + queueAhead }
    }

    /// A received message as the machine sees it.
    struct Incoming: Sendable {
        var receipt: String
        /// The task id, for logs.
        var label: String
        var message: Message
    }

    enum Event: Sendable {
        /// The driver began.
        case start
        /// A receive answered (perhaps with nothing).
        case received([Incoming])
        /// A receive failed.
        case receiveFailed
        /// A message's task is decoded and its inputs fetched; `model` is the checkpoint it wants.
        case prepared(receipt: String, Job, model: String)
        /// Preparing settled the message itself (undecodable, inputs missing, refused).
        case settledEarly(receipt: String, MessageDisposition)
        /// The runtime has the job (queued there or running).
        case submitted(receipt: String)
        /// The runtime is done with the job (its place is free).
        case runtimeReleased(receipt: String)
        /// The job's run returned; nil: it was stopped by shutdown and its message is handed back.
        case ran(receipt: String, Outcome?)
        /// The outcome was stored and reported (or not): what to do with the message.
        case settled(receipt: String, MessageDisposition)
        /// A release (delete, visibility change) was performed.
        case released(receipt: String)
        /// The heartbeat's time came.
        case tick
        /// An extension asked for at `at` succeeded.
        case extended(receipt: String, at: Duration)
        /// Graceful shutdown began.
        case shutdown
    }

    enum Action: Sendable {
        /// Long-poll for one message, after waiting `after` (the back-off after failures).
        case receive(after: Duration)
        /// Decode the message and fetch its inputs.
        case prepare(receipt: String, Message)
        /// Run the job on the runtime; `exclusive`: it may load another model (it has the
        /// runtime to itself, and its `running` mark comes first).
        case run(receipt: String, Job, exclusive: Bool)
        /// Store and report the outcome.
        case settle(receipt: String, Outcome)
        /// Delete the message or change its visibility.
        case release(receipt: String, MessageDisposition)
        /// Extend these messages' visibility (asked for at `at`).
        case extend([String], at: Duration)
        /// These messages' leases ran out (label for each): another worker may run them too.
        case lost([String])
        /// Shutdown is complete: hand these messages back (visibility 0) and stop.
        case finish(handBack: [String])
    }

    enum Phase: Sendable, Equatable { case running, draining, finished }

    let limits: Limits
    private(set) var phase = Phase.running
    private(set) var leases: LeaseMachine
    private(set) var receiving = false
    /// Receives failed in a row (the back-off doubles with each).
    private(set) var failures = 0
    private(set) var preparing: Set<String> = []
    /// Prepared jobs in arrival order, waiting for a runtime place.
    private(set) var ready: [(receipt: String, job: Job, model: String)] = []
    /// Runtime places held by each job at the runtime.
    private(set) var atRuntime: [String: Int] = [:]
    /// The job handed to the runtime that it has not yet taken.
    private(set) var unsubmitted: String?
    /// Runs that have not returned.
    private(set) var running: Set<String> = []
    private(set) var awaitingUpload: [(receipt: String, outcome: Outcome)] = []
    private(set) var uploading: Set<String> = []
    /// Releases asked for and not yet confirmed, with what each was to do.
    private(set) var releasing: [String: MessageDisposition] = [:]
    /// The model of the last job handed to the runtime (nil before the first).
    private(set) var lastModel: String?

    init(limits: Limits, visibility: Duration, heartbeat: Duration) {
        self.limits = limits
        leases = LeaseMachine(visibility: visibility, heartbeat: heartbeat)
    }

    /// Messages between a receive and an upload slot.
    var inPipeline: Int {
        (receiving ? 1 : 0) + preparing.count + ready.count + running.count + awaitingUpload.count
    }

    /// When the heartbeat must next tick: the next lease due, at most `interval` from `now`.
    func nextTick(now: Duration, interval: Duration) -> Duration {
        min(leases.nextDeadline ?? (now + interval), now + interval)
    }

    /// Handles one event at `now`; returns what to do.
    mutating func handle(_ event: Event, now: Duration) -> [Action] {
        // Once finished (or stopped) nothing changes: late reports of cancelled work are ignored.
        guard phase != .finished else { return [] }
        var actions: [Action] = []
        switch event {
        case .start:
            break
        case .received(let messages):
            receiving = false
            failures = 0
            for incoming in messages {
                leases.received(incoming.receipt, label: incoming.label, at: now)
                // Received while shutting down: held, and handed back at the end.
                guard phase == .running else { continue }
                preparing.insert(incoming.receipt)
                actions.append(.prepare(receipt: incoming.receipt, incoming.message))
            }
        case .receiveFailed:
            receiving = false
            failures += 1
        case .prepared(let receipt, let job, let model):
            guard preparing.remove(receipt) != nil else { break }
            if phase == .running { ready.append((receipt, job, model)) }
        case .settledEarly(let receipt, let disposition):
            guard preparing.remove(receipt) != nil else { break }
            actions.append(release(receipt, disposition))
        case .submitted(let receipt):
            if unsubmitted == receipt { unsubmitted = nil }
        case .runtimeReleased(let receipt):
            freeRuntime(receipt)
        case .ran(let receipt, let outcome):
            guard running.remove(receipt) != nil else { break }
            freeRuntime(receipt)
            if let outcome { awaitingUpload.append((receipt, outcome)) }
        case .settled(let receipt, let disposition):
            guard uploading.remove(receipt) != nil else { break }
            actions.append(release(receipt, disposition))
        case .released(let receipt):
            releasing.removeValue(forKey: receipt)
        case .tick:
            for action in leases.tick(at: now) {
                switch action {
                case .extend(let receipts):
                    actions.append(.extend(receipts, at: now))
                case .lost(let lost):
                    actions.append(.lost(lost.map(\.label)))
                }
            }
        case .extended(let receipt, let at):
            leases.extended(receipt, at: at)
        case .shutdown:
            guard phase == .running else { break }
            phase = .draining
            // Jobs not yet at the runtime stay unstarted; their messages go back at the end.
            ready.removeAll()
        }
        actions += advance()
        return actions
    }

    /// The driver stops without a graceful shutdown (it was cancelled): nothing changes any
    /// more. Returns what the caller must still do, by receipt: the messages still leased go back
    /// (`retry(after: .zero)`), and a release asked for but not confirmed is done again with its
    /// own disposition — cancelled work reports in concurrently, and a release it asked for may
    /// never have been performed. Doing one twice is harmless (a second delete or hand-back of
    /// the same receipt changes nothing); not doing it would leave the message hidden until its
    /// visibility ran out.
    mutating func stop() -> [(receipt: String, disposition: MessageDisposition)] {
        phase = .finished
        var unfinished = releasing
        releasing.removeAll()
        for receipt in leases.drain() { unfinished[receipt] = .retry(after: .zero) }
        return unfinished.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Ends a message's lease and releases it.
    private mutating func release(_ receipt: String, _ disposition: MessageDisposition) -> Action {
        leases.settled(receipt)
        releasing[receipt] = disposition
        return .release(receipt: receipt, disposition)
    }

    private mutating func freeRuntime(_ receipt: String) {
        if unsubmitted == receipt { unsubmitted = nil }
        atRuntime.removeValue(forKey: receipt)
    }

    /// Starts whatever the limits now allow.
    private mutating func advance() -> [Action] {
        guard phase != .finished else { return [] }
        var actions: [Action] = []
        // Uploads drain on shutdown too: work the GPU finished is stored and reported.
        while uploading.count < limits.uploads, !awaitingUpload.isEmpty {
            let next = awaitingUpload.removeFirst()
            uploading.insert(next.receipt)
            actions.append(.settle(receipt: next.receipt, next.outcome))
        }
        if phase == .running {
            while unsubmitted == nil, let next = ready.first {
                let exclusive = lastModel == nil || (!next.model.isEmpty && next.model != lastModel)
                let places = exclusive ? limits.runtimePlaces : 1
                guard atRuntime.values.reduce(0, +) + places <= limits.runtimePlaces else { break }
                ready.removeFirst()
                if !next.model.isEmpty { lastModel = next.model }
                atRuntime[next.receipt] = places
                running.insert(next.receipt)
                unsubmitted = next.receipt
                actions.append(.run(receipt: next.receipt, next.job, exclusive: exclusive))
            }
            if !receiving, inPipeline < limits.pipeline {
                receiving = true
                actions.append(.receive(after: backoff))
            }
        } else if !receiving, preparing.isEmpty, running.isEmpty, awaitingUpload.isEmpty, uploading.isEmpty, releasing.isEmpty {
            phase = .finished
            actions.append(.finish(handBack: leases.drain()))
        }
        return actions
    }

    /// The wait before the next receive: none, then 200 ms doubling with each failure up to 10 s.
    var backoff: Duration {
        guard failures > 0 else { return .zero }
        return min(.milliseconds(200) * (1 << min(failures - 1, 6)), .seconds(10))
    }
}
