import Foundation
import SDQMessages
import SDQPlatform
import Synchronization

/// Routing that follows the model cache: a task naming a registered checkpoint may run on any
/// pool of its family, and goes — among those whose load is within ``Dispatcher/affinitySlack``
/// tasks of the least loaded — to the one that needs the least work to start it:
///
/// 1. **loaded**: a live worker of the pool reports the checkpoint loaded (its heartbeat's
///    `loaded_sha256`), or this dispatcher sent the checkpoint there within ``stickiness``
///    (heartbeats come every 10 s; a burst of one model must not spread before they do);
/// 2. **cached**: a live worker has the file in its cache (`cached`): a switch, no download;
/// 3. **family**: any pool of the family: a download and a switch.
///
/// Ties go to the less loaded pool, then configuration order. With affinity off (the pools
/// file's `model_routing.affinity: false`), only load decides.
enum ModelAffinity {
    enum Tier: Int, Comparable, Sendable {
        case loaded = 0, cached, family
        static func < (a: Tier, b: Tier) -> Bool { a.rawValue < b.rawValue }
    }

    /// How long a dispatch counts as "loaded there" before a heartbeat confirms it.
    static let stickiness: Int64 = 30_000

    /// The tier of `pool` for the checkpoint with digest prefix `digest`.
    static func tier(
        of pool: String, digest: String, heartbeats: [WorkerHeartbeat], recentlySent: Bool, now: Int64
    ) -> Tier {
        let live = heartbeats.filter { $0.pool == pool && $0.isLive(at: now) && $0.state != .draining }
        if recentlySent || live.contains(where: { $0.loadedDigest == digest }) { return .loaded }
        if live.contains(where: { $0.cached.contains(digest) }) { return .cached }
        return .family
    }

    /// The pool for the task among `candidates` (in configuration order), with each one's load
    /// (tasks waiting or running on its lanes) and tier.
    static func choose(_ candidates: [(pool: PoolSpec, load: Int, tier: Tier)], slack: Int, affinity: Bool) -> PoolSpec? {
        guard let least = candidates.map(\.load).min() else { return nil }
        let indexed = candidates.enumerated().map { (index: $0.offset, entry: $0.element) }
        let eligible = affinity ? indexed.filter { $0.entry.load <= least + max(0, slack) } : indexed
        return eligible.min { a, b in
            let keyA = (affinity ? a.entry.tier.rawValue : 0, a.entry.load, a.index)
            let keyB = (affinity ? b.entry.tier.rawValue : 0, b.entry.load, b.index)
            return keyA < keyB
        }?.entry.pool
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

/// Where this dispatcher sent each checkpoint last, and when (``ModelAffinity/stickiness``).
final class RecentPlacements: Sendable {
    private let placed = Mutex<[String: (pool: String, at: Int64)]>([:])

    func note(digest: String, pool: String, now: Int64) {
        placed.withLock {
            $0[digest] = (pool, now)
            if $0.count > 10_000 { $0 = $0.filter { now - $1.at < ModelAffinity.stickiness } }
        }
    }

    func sentRecently(digest: String, to pool: String, now: Int64) -> Bool {
        placed.withLock { entry in entry[digest].map { $0.pool == pool && now - $0.at < ModelAffinity.stickiness } ?? false }
    }
}

extension Dispatcher {
    /// The pool for a task naming a registered checkpoint (``ModelAffinity``).
    func choosePool(forFamily family: String, digest fullDigest: String, now: Int64) async -> PoolSpec? {
        let candidates = context.pools.pools(servingFamily: family)
        guard candidates.count > 1 else { return candidates.first }
        let digest = WorkerHeartbeat.digestPrefix(fullDigest)
        let routing = context.pools.modelRouting
        let heartbeats = routing.affinity ? await fleet.heartbeats(from: context.transport.tasks, maxAge: fleetRefresh) : []
        var scored: [(pool: PoolSpec, load: Int, tier: ModelAffinity.Tier)] = []
        for pool in candidates {
            let tier = ModelAffinity.tier(
                of: pool.name, digest: digest, heartbeats: heartbeats,
                recentlySent: placements.sentRecently(digest: digest, to: pool.name, now: now), now: now)
            scored.append((pool, await load(of: pool.name), tier))
        }
        let chosen = ModelAffinity.choose(scored, slack: routing.slack, affinity: routing.affinity) ?? candidates[0]
        if routing.affinity { placements.note(digest: digest, pool: chosen.name, now: now) }
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
