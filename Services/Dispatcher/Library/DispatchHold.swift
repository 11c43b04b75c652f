import SDQMessages
import SDQPlatform
import Synchronization

/// One pool lane: a pool's normal or high-priority queue.
struct LaneKey: Hashable, Sendable {
    let pool: String
    let high: Bool
}

/// A dispatch-queue message the dispatcher holds until its lane has room.
struct HeldTask: Sendable {
    var message: QueueMessage
    let task: Sdq_V1_GenerationTask
    /// The pool chosen when it was received (so routing it later reads nothing again).
    let pool: PoolSpec
}

/// The tasks one dispatcher holds, a ``FairShareQueue`` per lane, and the lease each message has
/// on the dispatch queue (its receipt and when its visibility lapses). Shared by the receive
/// loop, the feeder and the lease keeper.
final class DispatchHold: Sendable {
    struct Lease: Sendable {
        var receiptHandle: String
        var visibleAt: ContinuousClock.Instant
    }

    private struct State {
        var lanes: [LaneKey: FairShareQueue<HeldTask>] = [:]
        /// By message id: the lease of every held message.
        var leases: [String: Lease] = [:]
        /// The tasks held (a task published twice, e.g. by a client's retry, is held once).
        var tasks: Set<String> = []
    }

    /// What ``hold(_:lane:tenant:visibleAt:)`` did.
    enum HoldOutcome: Equatable {
        /// Held.
        case held
        /// The message was held already (received again after its lease lapsed): its receipt
        /// is the new one.
        case renewed
        /// Another message of the same task is held: this one can go.
        case duplicateTask
    }

    private let state = Mutex(State())

    /// Tasks held, every lane together.
    var count: Int { state.withLock { $0.leases.count } }

    /// Holds `held` for `lane`, unless its message or its task is held already.
    func hold(_ held: HeldTask, lane: LaneKey, tenant: String, visibleAt: ContinuousClock.Instant) -> HoldOutcome {
        state.withLock { state in
            let id = held.message.messageID
            if state.leases[id] != nil {
                state.leases[id] = Lease(receiptHandle: held.message.receiptHandle, visibleAt: visibleAt)
                return .renewed
            }
            guard state.tasks.insert(held.task.id).inserted else { return .duplicateTask }
            state.leases[id] = Lease(receiptHandle: held.message.receiptHandle, visibleAt: visibleAt)
            state.lanes[lane, default: FairShareQueue()].append(held, tenant: tenant)
            return .held
        }
    }

    /// The lanes with tasks waiting.
    var waitingLanes: [LaneKey] { state.withLock { $0.lanes.filter { !$1.isEmpty }.map(\.key) } }

    /// Tasks waiting per lane and tenant.
    var waiting: [LaneKey: [String: Int]] { state.withLock { $0.lanes.mapValues(\.waiting) } }

    /// Up to `limit` tasks of `lane` in fair-share order, each with its newest receipt; they are
    /// no longer held.
    func take(_ lane: LaneKey, upTo limit: Int) -> [HeldTask] {
        state.withLock { state in
            guard limit > 0, var queue = state.lanes[lane] else { return [] }
            var taken = queue.take(upTo: limit)
            state.lanes[lane] = queue.isEmpty ? nil : queue
            for index in taken.indices {
                state.tasks.remove(taken[index].task.id)
                if let lease = state.leases.removeValue(forKey: taken[index].message.messageID) {
                    taken[index].message.receiptHandle = lease.receiptHandle
                }
            }
            return taken
        }
    }

    /// The leases that lapse before `instant`, marked as renewed until `renewedUntil` (the
    /// caller extends them on the queue).
    func renewing(lapsingBefore instant: ContinuousClock.Instant, until renewedUntil: ContinuousClock.Instant) -> [String] {
        state.withLock { state in
            var receipts: [String] = []
            for (id, lease) in state.leases where lease.visibleAt < instant {
                receipts.append(lease.receiptHandle)
                state.leases[id]?.visibleAt = renewedUntil
            }
            return receipts
        }
    }

    /// Every held task, each with its newest receipt; nothing is held afterwards.
    func removeAll() -> [HeldTask] {
        state.withLock { state in
            var all: [HeldTask] = []
            for lane in state.lanes.keys {
                var queue = state.lanes[lane]!
                all += queue.removeAll()
            }
            state.lanes = [:]
            for index in all.indices {
                if let lease = state.leases[all[index].message.messageID] { all[index].message.receiptHandle = lease.receiptHandle }
            }
            state.leases = [:]
            state.tasks = []
            return all
        }
    }
}
