/// The leases a worker holds on its messages (prefetched, running or uploading), as a state
/// machine: events in (``received(_:label:at:)``, ``settled(_:)``, ``tick(at:)``,
/// ``extended(_:at:)``, ``drain()``), actions out (``Action``). It performs no I/O and reads no
/// clock: times are offsets from the driver's start, so tests drive it with plain numbers.
///
/// Each lease is extended one `heartbeat` after its last extension (or its receipt) — not all of
/// them on one timer, so a message received a moment ago costs no request. A lease whose
/// visibility deadline passes without a successful extension is lost: SQS may already have given
/// the message to another worker, so it is reported and no longer extended (the task's result is
/// still sent; processing is idempotent).
struct LeaseMachine: Sendable, Equatable {
    struct Lease: Sendable, Equatable {
        var label: String
        /// When the last extension was asked for (or the message received).
        var extendedAt: Duration
        /// Until when the queue keeps the message hidden, as far as confirmed.
        var hiddenUntil: Duration
    }

    enum Action: Sendable, Equatable {
        /// Extend these messages' visibility by the visibility timeout.
        case extend([String])
        /// These leases ran out before an extension succeeded: stop extending them.
        case lost([(receipt: String, label: String)])

        static func == (lhs: Action, rhs: Action) -> Bool {
            switch (lhs, rhs) {
            case (.extend(let a), .extend(let b)): a == b
            case (.lost(let a), .lost(let b)): a.map(\.receipt) == b.map(\.receipt) && a.map(\.label) == b.map(\.label)
            default: false
            }
        }
    }

    let visibility: Duration
    let heartbeat: Duration
    private(set) var leases: [String: Lease] = [:]

    init(visibility: Duration, heartbeat: Duration) {
        self.visibility = visibility
        self.heartbeat = heartbeat
    }

    /// A message was received with `visibility` from `now`.
    mutating func received(_ receipt: String, label: String, at now: Duration) {
        leases[receipt] = Lease(label: label, extendedAt: now, hiddenUntil: now + visibility)
    }

    /// The worker deleted the message or gave it back: the lease ends.
    mutating func settled(_ receipt: String) {
        leases.removeValue(forKey: receipt)
    }

    /// An extension asked for at `requestedAt` succeeded.
    mutating func extended(_ receipt: String, at requestedAt: Duration) {
        guard var lease = leases[receipt] else { return }
        lease.hiddenUntil = max(lease.hiddenUntil, requestedAt + visibility)
        leases[receipt] = lease
    }

    /// The heartbeat at `now`: leases past their deadline are lost, those due are extended.
    mutating func tick(at now: Duration) -> [Action] {
        var actions: [Action] = []
        let lost = leases.filter { $0.value.hiddenUntil <= now }.sorted { $0.key < $1.key }
        if !lost.isEmpty {
            for (receipt, _) in lost { leases.removeValue(forKey: receipt) }
            actions.append(.lost(lost.map { ($0.key, $0.value.label) }))
        }
        let due = leases.filter { $0.value.extendedAt + heartbeat <= now }.map(\.key).sorted()
        if !due.isEmpty {
            for receipt in due { leases[receipt]?.extendedAt = now }
            actions.append(.extend(due))
        }
        return actions
    }

    /// When the next tick has something to do; nil when no lease is held.
    var nextDeadline: Duration? {
        leases.values.map { min($0.extendedAt + heartbeat, $0.hiddenUntil) }.min()
    }

    /// Shutdown: every lease ends; the driver hands the messages back.
    mutating func drain() -> [String] {
        defer { leases.removeAll() }
        return leases.keys.sorted()
    }
}
