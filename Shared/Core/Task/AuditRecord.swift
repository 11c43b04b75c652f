/// One audit record: an operator action or a security event, with who, what, when and from where.
/// Kept for a configured time (`SDQ_AUDIT_RETENTION_DAYS`) and readable by operators
/// (`GET /v1/audit`). Never holds a key: an unknown key is named by a short digest.
public struct AuditRecord: Sendable, Codable, Equatable {
    /// Unique and time-ordered: the time, then random digits.
    public var id: String
    /// When, epoch milliseconds.
    public var at: Int64
    /// Who: the tenant that acted, or `unknown` for a key that is not accepted.
    public var actor: String
    /// The actor's role (`client`, `operator`), nil when unknown.
    public var role: String?
    /// What: `task.cancel`, `task.purge`, `tenant.purge`, `auth.refused`, `quota.refused`,
    /// `policy.refused`.
    public var action: String
    /// What it was done to: a task id, a tenant, a limit.
    public var target: String?
    /// From where: the client's address as the front door saw it.
    public var source: String?
    /// For `auth.refused`: the first 12 hex digits of the presented key's SHA-256.
    public var keyDigest: String?
    /// Further detail (the refusal's message, the owner of a task an operator touched).
    public var detail: String?
    /// After this time the record may be deleted (epoch milliseconds).
    public var expiresAt: Int64

    public init(
        id: String, at: Int64, actor: String, role: String? = nil, action: String, target: String? = nil, source: String? = nil,
        keyDigest: String? = nil, detail: String? = nil, expiresAt: Int64
    ) {
        self.id = id
        self.at = at
        self.actor = actor
        self.role = role
        self.action = action
        self.target = target
        self.source = source
        self.keyDigest = keyDigest
        self.detail = detail
        self.expiresAt = expiresAt
    }
}

/// A page of audit records, newest first.
public struct AuditQuery: Sendable, Equatable {
    /// At or after, epoch milliseconds.
    public var since: Int64?
    /// Before, epoch milliseconds.
    public var until: Int64?
    public var limit: Int
    /// Continue after this record (a page's last `(at, id)`).
    public var after: (at: Int64, id: String)?

    public init(since: Int64? = nil, until: Int64? = nil, limit: Int = 50, after: (at: Int64, id: String)? = nil) {
        self.since = since
        self.until = until
        self.limit = limit
        self.after = after
    }

    public static func == (a: AuditQuery, b: AuditQuery) -> Bool {
        a.since == b.since && a.until == b.until && a.limit == b.limit && a.after?.at == b.after?.at && a.after?.id == b.after?.id
    }
}
