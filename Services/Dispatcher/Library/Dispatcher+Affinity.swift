import Foundation
import SDQMessages
import SDQPlatform
import Synchronization

/// Routing that follows the model cache. A task naming a registered checkpoint may run on any
/// pool of its family; a task naming one of the pools' fixed models, on any pool listing it. It
/// goes — among those whose load is within the pools file's `model_routing.slack` tasks of the
/// least loaded — to the one that needs the least work to start it:
///
/// 1. **loaded**: a live worker of the pool reports the model loaded (its heartbeat's
///    `loaded_sha256` for a registered checkpoint, `loaded_model` for a fixed model), or this
///    dispatcher sent it there within ``stickiness`` (heartbeats come every 10 s; a burst of one
///    model must not spread before they do);
/// 2. **cached**: a live worker has the checkpoint's file in its cache (`cached`): a switch, no
///    download (fixed models are always on the pool's disk, so they have no such tier);
/// 3. **family**: any candidate pool — the model's home by rendezvous hashing, so each checkpoint
///    has one pool whose cache keeps it: a download and a switch there.
///
/// Loaded and cached ties go to the less loaded pool. With affinity off (the pools file's
/// `model_routing.affinity: false`), only load decides, ties taken in turn.
enum ModelAffinity {
    /// What a task needs warm: a registered checkpoint (by the digest prefix heartbeats carry) or
    /// a pool's fixed model (by name).
    enum Need: Sendable, Equatable {
        case checkpoint(digest: String)
        case model(String)

        /// The key for rendezvous hashing and recent placements.
        var key: String {
            switch self {
            case .checkpoint(let digest): digest
            case .model(let name): "model:" + name
            }
        }

        func isLoaded(on worker: WorkerHeartbeat) -> Bool {
            switch self {
            case .checkpoint(let digest): worker.loadedDigest == digest
            case .model(let name): worker.loadedModel == name
            }
        }

        func isCached(on worker: WorkerHeartbeat) -> Bool {
            if case .checkpoint(let digest) = self { return worker.cached.contains(digest) }
            return false
        }
    }

    enum Tier: Int, Comparable, Sendable {
        case loaded = 0, cached, family
        static func < (a: Tier, b: Tier) -> Bool { a.rawValue < b.rawValue }
    }

    /// How long a dispatch counts as "loaded there" before a heartbeat confirms it.
    static let stickiness: Int64 = 30_000

    /// The tier of `pool` for what a task needs.
    static func tier(
        of pool: String, need: Need, heartbeats: [WorkerHeartbeat], recentlySent: Bool, now: Int64
    ) -> Tier {
        let live = heartbeats.filter { $0.pool == pool && $0.isLive(at: now) && $0.state != .draining }
        if recentlySent || live.contains(where: need.isLoaded(on:)) { return .loaded }
        if live.contains(where: need.isCached(on:)) { return .cached }
        return .family
    }

    /// The pool for the task among `candidates` (in configuration order), with each one's load
    /// (tasks waiting or running on its lanes) and tier. With affinity, a model warm nowhere goes to
    /// its home pool by rendezvous hashing of its `key` (``Need/key``, ``weight(_:_:)``), so each
    /// pool's cache holds its own share of the checkpoints instead of all of them in turn; loaded and
    /// cached ties go to the less loaded pool. Without affinity, the least loaded pool, ties taken
    /// in turn from `rotation`.
    static func choose(
        _ candidates: [(pool: PoolSpec, load: Int, tier: Tier)], slack: Int, affinity: Bool, key: String = "", rotation: Int = 0
    ) -> PoolSpec? {
        guard let least = candidates.map(\.load).min() else { return nil }
        let count = candidates.count
        let indexed = candidates.enumerated().map { (index: $0.offset, entry: $0.element) }
        guard affinity else {
            return indexed.min { a, b in
                (a.entry.load, (a.index - rotation % count + count) % count) < (b.entry.load, (b.index - rotation % count + count) % count)
            }?.entry.pool
        }
        let eligible = indexed.filter { $0.entry.load <= least + max(0, slack) }
        let best = eligible.map(\.entry.tier).min() ?? .family
        let tied = eligible.filter { $0.entry.tier == best }
        if best == .family, !key.isEmpty {
            return tied.max { weight(key, $0.entry.pool.name) < weight(key, $1.entry.pool.name) }?.entry.pool
        }
        return tied.min { ($0.entry.load, $0.index) < ($1.entry.load, $1.index) }?.entry.pool
    }

    /// The rendezvous weight of a model's key on a pool (FNV-1a of both): the pool with the
    /// highest weight is the model's home. Adding or removing a pool moves only the models whose
    /// home it is.
    static func weight(_ key: String, _ pool: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 + [0] + pool.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        // FNV's low bits mix poorly for short inputs: finish with a murmur-style avalanche.
        hash ^= hash >> 33
        hash = hash &* 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return hash
    }
}

/// The fleet's heartbeats as the dispatcher last read them: one Query at most every
/// ``Dispatcher/fleetRefresh``, whatever the task rate.
final class FleetView: Sendable {
    private let state = Mutex<(heartbeats: [WorkerHeartbeat], at: ContinuousClock.Instant?)>(([], nil))

    func heartbeats(from store: any TaskStore, maxAge: Duration) async -> [WorkerHeartbeat] {
        let held = state.withLock { $0 }
        if let at = held.at, ContinuousClock.now - at < maxAge { return held.heartbeats }
        guard let fresh = try? await store.heartbeats(pool: nil) else { return held.heartbeats }
        state.withLock { $0 = (fresh, .now) }
        return fresh
    }
}

/// A counter that turns, for taking ties in turn.
final class Rotation: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).oldValue & Int.max }
}

/// Where this dispatcher sent each model (by ``ModelAffinity/Need/key``) last, and when
/// (``ModelAffinity/stickiness``).
final class RecentPlacements: Sendable {
    private let placed = Mutex<[String: (pool: String, at: Int64)]>([:])

    func note(key: String, pool: String, now: Int64) {
        placed.withLock {
            $0[key] = (pool, now)
            if $0.count > 10_000 { $0 = $0.filter { now - $1.at < ModelAffinity.stickiness } }
        }
    }

    func sentRecently(key: String, to pool: String, now: Int64) -> Bool {
        placed.withLock { entry in entry[key].map { $0.pool == pool && now - $0.at < ModelAffinity.stickiness } ?? false }
    }
}

extension Dispatcher {
    /// The pool for a task naming a registered checkpoint of `family` (``ModelAffinity``).
    func choosePool(forFamily family: String, digest: String, now: Int64) async -> PoolSpec? {
        await choosePool(
            among: context.pools.pools(servingFamily: family), need: .checkpoint(digest: WorkerHeartbeat.digestPrefix(digest)), now: now)
    }

    /// The pool among `candidates` (in configuration order) for what the task needs (``ModelAffinity``).
    func choosePool(among candidates: [PoolSpec], need: ModelAffinity.Need, now: Int64) async -> PoolSpec? {
        guard candidates.count > 1 else { return candidates.first }
        let routing = context.pools.modelRouting
        let heartbeats = routing.affinity ? await fleet.heartbeats(from: context.transport.tasks, maxAge: fleetRefresh) : []
        var scored: [(pool: PoolSpec, load: Int, tier: ModelAffinity.Tier)] = []
        for pool in candidates {
            let tier = ModelAffinity.tier(
                of: pool.name, need: need, heartbeats: heartbeats,
                recentlySent: placements.sentRecently(key: need.key, to: pool.name, now: now), now: now)
            scored.append((pool, await load(of: pool.name), tier))
        }
        let chosen =
            ModelAffinity.choose(scored, slack: routing.slack, affinity: routing.affinity, key: need.key, rotation: rotation.next())
            ?? candidates[0]
        if routing.affinity { placements.note(key: need.key, pool: chosen.name, now: now) }
        return chosen
    }

    /// Tasks waiting or running on a pool's lanes: the last sample plus what was sent since, or
    /// the queues' depth when no recent sample exists.
    func load(of pool: String) async -> Int {
        let lanes = context.workerQueue(pool: pool)
        var total = 0
        for queue in [lanes.high, lanes.normal] {
            if let estimate = depths.load(queue.name, maxAge: backlogInterval * 2) {
                total += estimate
            } else if let depth = try? await queue.depth() {
                depths.record(queue.name, visible: depth.visible, inFlight: depth.inFlight)
                total += depth.visible + depth.inFlight
            }
        }
        return total
    }
}
