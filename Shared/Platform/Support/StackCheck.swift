/// One line of `sdq doctor`'s checklist: what was checked, what was found and, when it failed,
/// how to fix it.
public struct StackCheck: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable, Comparable {
        case ok, skipped, warning, failed

        public static func < (a: Status, b: Status) -> Bool { a.rank < b.rank }
        var rank: Int { [.ok: 0, .skipped: 1, .warning: 2, .failed: 3][self] ?? 0 }
    }

    /// The group it belongs to: `identity`, `queues`, `topics`, `storage`, `access`, `fleet`.
    public var area: String
    /// The resource or subject, e.g. the queue's name.
    public var subject: String
    /// What was checked, in a few words.
    public var check: String
    public var status: Status
    /// What was found.
    public var detail: String
    /// How to fix it, when it is not ok.
    public var fix: String?

    public init(area: String, subject: String, check: String, status: Status, detail: String, fix: String? = nil) {
        self.area = area
        self.subject = subject
        self.check = check
        self.status = status
        self.detail = detail
        self.fix = fix
    }

    /// The fix for messages left in a dead-letter queue.
    public static let deadLetterFix =
        "look at them with `GET /v1/dead-letters` (the console's Dead letters view), fix the cause, then `POST /v1/dead-letters/redrive`"

    public static func ok(_ area: String, _ subject: String, _ check: String, _ detail: String) -> StackCheck {
        StackCheck(area: area, subject: subject, check: check, status: .ok, detail: detail)
    }

    public static func failed(_ area: String, _ subject: String, _ check: String, _ detail: String, fix: String) -> StackCheck {
        StackCheck(area: area, subject: subject, check: check, status: .failed, detail: detail, fix: fix)
    }
}
