import Crypto
import Foundation
import SDQAWS
import SDQPlatform
import Synchronization

/// Records a repeated security event from one source at most once a minute per API process, so
/// a client hammering with a bad key cannot turn each request into a store write.
final class AuditThrottle: Sendable {
    private let recent = Mutex<[String: Int64]>([:])
    static let window: Int64 = 60_000

    /// Whether an event with `key` at `now` should be recorded.
    func admits(_ key: String, now: Int64) -> Bool {
        recent.withLock { recent in
            if recent.count > 10_000 { recent = recent.filter { now - $0.value < Self.window } }
            if let last = recent[key], now - last < Self.window { return false }
            recent[key] = now
            return true
        }
    }
}

extension APIHandler {
    /// The client's address: the Lambda event's source IP, else the first `X-Forwarded-For`
    /// hop when the connection comes from a trusted proxy, else the connection's peer.
    func clientAddress(_ request: APIRequest) -> String? {
        if let source = request.sourceAddress { return source }
        if let peer = request.peerAddress, trustedProxies.contains(where: { $0.contains(peer) }),
            let forwarded = request.headers["x-forwarded-for"]?.split(separator: ",").last?.trimmingWhitespace(), !forwarded.isEmpty
        {
            return String(forwarded.prefix(64))
        }
        return request.peerAddress
    }

    /// Writes an audit record: `action` by `actor` on `target`, from the request's client.
    /// Best effort: a store that cannot take it is logged, never a failure of the request.
    func audit(_ action: String, by actor: Tenant?, target: String?, detail: String? = nil, keyDigest: String? = nil, request: APIRequest) async {
        let now = EpochClock.nowMillis()
        let record = AuditRecord(
            id: TaskID.generate(now: now), at: now, actor: actor?.name ?? "unknown", role: actor?.role.rawValue, action: action,
            target: target, source: clientAddress(request), keyDigest: keyDigest, detail: detail,
            expiresAt: now + auditRetention.milliseconds)
        do { try await context.transport.tasks.appendAudit(record) } catch {
            logger.error("cannot write an audit record", metadata: ["action": "\(action)", "error": "\(error)"])
        }
    }

    /// A request refused for its key: `auth.refused` with the key's short digest (never the key),
    /// once a minute per source and key. Requests with no key at all are not recorded.
    public func auditRefusedKey(_ request: APIRequest) async {
        guard let presented = Self.presentedKey(request), !presented.isEmpty else { return }
        let digest = Hex.lowercase(SHA256.hash(data: Data(presented.utf8)).prefix(6))
        guard auditThrottle.admits("auth|\(clientAddress(request) ?? "-")|\(digest)", now: EpochClock.nowMillis()) else { return }
        await audit("auth.refused", by: nil, target: nil, detail: "unknown or revoked API key", keyDigest: digest, request: request)
    }

    /// `GET /v1/audit?since=&until=&limit=&cursor=` (operator keys only): audit records, newest
    /// first, a page at a time.
    func auditLog(_ request: APIRequest, tenant: Tenant) async throws(APIError) -> APIResponse {
        guard tenant.role == .operator else {
            throw APIError(status: 403, code: "operator_only", message: "the audit log needs an operator key")
        }
        try Self.refuseUnknownParameters(request, known: ["since", "until", "limit", "cursor"], of: "the audit log")
        var query = AuditQuery(since: try Self.time(request.query["since"], field: "since"), until: try Self.time(request.query["until"], field: "until"))
        if let text = request.query["limit"] {
            guard let limit = Int(text), (1...500).contains(limit) else { throw .invalid("limit", "limit must be an integer from 1 to 500") }
            query.limit = limit
        }
        if let cursor = request.query["cursor"] {
            let parts = cursor.split(separator: "_", maxSplits: 1).map(String.init)
            guard parts.count == 2, let at = Int64(parts[0]), at >= 0, parts[1].count <= 64,
                parts[1].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) })
            else { throw .invalid("cursor", "cursor is not one this API returned") }
            query.after = (at, parts[1])
        }
        let page: (records: [AuditRecord], more: Bool)
        do { page = try await context.transport.tasks.audit(query) } catch { throw .unavailable("\(error)") }
        let records: [JSONValue] = page.records.map { record in
            var object: [String: JSONValue] = [
                "id": .string(record.id), "at": .number(Double(record.at)), "actor": .string(record.actor), "action": .string(record.action),
            ]
            object["role"] = record.role.map(JSONValue.string) ?? .null
            object["target"] = record.target.map(JSONValue.string) ?? .null
            object["source"] = record.source.map(JSONValue.string) ?? .null
            object["key_sha256_prefix"] = record.keyDigest.map(JSONValue.string) ?? .null
            object["detail"] = record.detail.map(JSONValue.string) ?? .null
            return .object(object)
        }
        let next = page.more ? page.records.last.map { "\($0.at)_\($0.id)" } : nil
        return .json(200, JSONValue.object(["records": .array(records), "next_cursor": next.map(JSONValue.string) ?? .null]).serialized())
    }
}
