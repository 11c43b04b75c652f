import Foundation
import SDQMessages
import SDQPlatform
import Synchronization

/// What a submission's model fields resolve to: nothing (a pool's fixed model, or none), or
/// registered files with the family that decides where the task may run.
struct ResolvedModels: Sendable {
    /// The files, checkpoint first.
    var assets: [Sdq_V1_ModelAsset] = []
    /// The checkpoint's family, for a registered one.
    var family: String?
    /// The pool the task is recorded under at submission (the dispatcher may pick another of
    /// the family).
    var pool: PoolSpec?

    static let none = ResolvedModels()
}

/// Registered models as one API instance reads them: by name, each kept ``ttl`` so a busy API
/// does not read the registry per task; a name not held is always read (a model registered a
/// moment ago is accepted at once). A removed model may be accepted for up to ``ttl`` after; its
/// tasks then fail at the worker with `model_unavailable`.
final class ModelCatalog: Sendable {
    static let ttl: Int64 = 30_000
    private let entries = Mutex<[String: (record: ModelRecord, at: Int64)]>([:])

    init() {}

    func lookup(_ name: String, in store: any TaskStore, now: Int64 = EpochClock.nowMillis()) async throws(TransportError) -> ModelRecord? {
        if let held = entries.withLock({ $0[name] }), now - held.at < Self.ttl { return held.record }
        let record = try await store.model(named: name)
        entries.withLock { entries in
            if let record { entries[name] = (record, now) } else { entries[name] = nil }
            if entries.count > 4096 { entries.removeAll() }
        }
        return record
    }
}

extension APIHandler {
    /// Checks a submission's `model`, `model_sha256` and `loras` against the pools and the
    /// registry, before anything is stored: unknown names, a LoRA of another family than its
    /// checkpoint, a family no pool (or not the named pool) serves and a pinned digest that is
    /// not the registered one are refused with a 422 naming the field — never found at the GPU.
    func resolveModels(_ s: TaskSubmission) async throws(APIError) -> ResolvedModels {
        guard let name = s.model else { return .none }
        let pools = context.pools
        if s.loras.isEmpty, s.modelSHA256 == nil {
            if let poolName = s.pool, let pool = pools.pool(named: poolName), pool.models.contains(name) { return .none }
            if s.pool == nil, pools.pool(servingModel: name) != nil { return .none }
        }
        let checkpoint = try await registered(name, field: "model")
        guard checkpoint.kind == .checkpoint else {
            throw APIError(status: 422, code: "invalid_model", message: "\(name) is a \(checkpoint.kind.rawValue), not a checkpoint", field: "model")
        }
        try checkPin(s.modelSHA256, of: checkpoint, field: "model_sha256")
        let pool: PoolSpec
        if let poolName = s.pool, let named = pools.pool(named: poolName) {
            guard named.serves(family: checkpoint.family) else {
                throw APIError(
                    status: 422, code: "family_not_served",
                    message: "pool \(poolName) does not serve \(checkpoint.family) models (it serves \(Self.served(named)))", field: "model")
            }
            pool = named
        } else {
            guard let first = pools.pools(servingFamily: checkpoint.family).first else {
                throw APIError(
                    status: 422, code: "family_not_served", message: "no pool serves \(checkpoint.family) models like \(name)", field: "model")
            }
            pool = first
        }
        var assets = [Sdq_V1_ModelAsset(record: checkpoint)]
        for (index, choice) in s.loras.enumerated() {
            let field = "loras[\(index)]"
            let lora = try await registered(choice.name, field: "\(field).name")
            guard lora.kind == .lora else {
                throw APIError(
                    status: 422, code: "invalid_model", message: "\(choice.name) is a \(lora.kind.rawValue), not a LoRA", field: "\(field).name")
            }
            guard lora.family == checkpoint.family else {
                throw APIError(
                    status: 422, code: "family_mismatch",
                    message: "LoRA \(choice.name) is for \(lora.family) models; checkpoint \(name) is \(checkpoint.family)", field: "\(field).name")
            }
            try checkPin(choice.sha256, of: lora, field: "\(field).sha256")
            assets.append(Sdq_V1_ModelAsset(record: lora, weight: choice.weight))
        }
        return ResolvedModels(assets: assets, family: checkpoint.family, pool: pool)
    }

    private func registered(_ name: String, field: String) async throws(APIError) -> ModelRecord {
        let record: ModelRecord?
        do { record = try await modelCatalog.lookup(name, in: context.transport.tasks) } catch { throw .unavailable("\(error)") }
        guard let record else {
            throw APIError(status: 422, code: "unknown_model", message: "no pool serves model \(name) and no model \(name) is registered", field: field)
        }
        return record
    }

    private func checkPin(_ pin: String?, of record: ModelRecord, field: String) throws(APIError) {
        guard let pin, pin != record.sha256 else { return }
        throw APIError(
            status: 422, code: "model_digest_mismatch",
            message: "\(record.name) is registered with SHA-256 \(record.sha256), not \(pin)", field: field)
    }

    private static func served(_ pool: PoolSpec) -> String {
        pool.families.isEmpty ? "fixed models only: \(pool.models.joined(separator: ", "))" : pool.families.joined(separator: ", ")
    }

    /// `GET /v1/models[?kind=&family=]`: the registered models. Where a file came from (`key`,
    /// `source`) is shown to operator keys only.
    func listModels(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        try Self.refuseUnknownParameters(request, known: ["kind", "family"], of: "the model list")
        let kind = request.query["kind"]
        if let kind, ModelRecord.Kind(rawValue: kind) == nil {
            throw .invalid("kind", "kind is one of \(ModelRecord.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let records: [ModelRecord]
        do { records = try await context.transport.tasks.models() } catch { throw .unavailable("\(error)") }
        let family = request.query["family"]
        if let family, let problem = ModelRecord.validateFamily(family) { throw .invalid("family", problem) }
        let models: [JSONValue] = records.filter { (kind == nil || $0.kind.rawValue == kind) && (family == nil || $0.family == family) }.map {
            var entry: [String: JSONValue] = [
                "name": .string($0.name), "kind": .string($0.kind.rawValue), "family": .string($0.family),
                "bytes": .number(Double($0.bytes)), "sha256": .string($0.sha256), "file_name": .string($0.fileName),
                "registered_at": .number(Double($0.registeredAt)),
                "pools": .array(context.pools.pools(servingFamily: $0.family).map { .string($0.name) }),
            ]
            if tenant.role == .operator {
                entry["key"] = .string($0.key)
                entry["source"] = $0.source.map(JSONValue.string) ?? .null
            }
            return .object(entry)
        }
        return .json(200, JSONValue.object(["models": .array(models)]).serialized())
    }
}
