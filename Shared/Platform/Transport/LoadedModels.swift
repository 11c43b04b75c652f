import Foundation

/// Which pools have a model loaded right now, kept in the object store so that it works on every
/// transport: a worker that has just run a task for model M in pool P writes
/// `workers/P/loaded/m-M` (the time, epoch ms) at most once a minute per model; the dispatcher, when
/// several pools serve a task's model and the task names no pool, prefers the pool whose marker is
/// freshest (within ``freshness``), so the task lands where no checkpoint switch is needed.
public enum LoadedModels {
    /// How long a marker counts as "loaded now".
    public static let freshness: Int64 = 10 * 60 * 1000
    /// How often a worker rewrites the marker of a model it keeps running.
    public static let refresh: Int64 = 60 * 1000

    public static func key(pool: String, model: String) -> String {
        let safe = model.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }
        return "workers/\(pool)/loaded/m-\(String(safe))"
    }

    /// Records that `pool` has `model` loaded.
    public static func mark(pool: String, model: String, in store: any ObjectStore, now: Int64) async {
        try? await store.put(key: key(pool: pool, model: model), data: Data(String(now).utf8), contentType: "text/plain")
    }

    /// When `pool` last reported `model` loaded (epoch ms), or nil.
    public static func lastSeen(pool: String, model: String, in store: any ObjectStore) async -> Int64? {
        guard let object = try? await store.get(key: key(pool: pool, model: model)) else { return nil }
        return Int64(String(decoding: object.data, as: UTF8.self))
    }

    /// The pool among `candidates` that has `model` loaded most recently (within ``freshness``), or
    /// the first candidate.
    public static func preferred(_ candidates: [PoolSpec], model: String, in store: any ObjectStore, now: Int64) async -> PoolSpec? {
        guard candidates.count > 1 else { return candidates.first }
        var best: (PoolSpec, Int64)?
        for pool in candidates {
            guard let seen = await lastSeen(pool: pool.name, model: model, in: store), now - seen <= freshness else { continue }
            if best == nil || seen > best!.1 { best = (pool, seen) }
        }
        return best?.0 ?? candidates.first
    }
}
