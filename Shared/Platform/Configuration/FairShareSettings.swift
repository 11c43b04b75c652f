/// How the dispatcher shares each pool lane among tenants (the pools file's `fair_share`).
///
/// The dispatcher keeps each lane short — at most ``laneDepth`` visible messages — and holds the
/// rest of the dispatch queue's tasks itself, one first-in first-out line per tenant, feeding the
/// lane round-robin across the tenants that wait. A tenant that queued 10,000 tasks therefore
/// gets every other slot, not the next 10,000, once a second tenant submits. A held task stays
/// `queued`, and its message stays on the dispatch queue (received, its visibility extended) until
/// it is on a lane, so a dispatcher that dies loses nothing: the messages come back.
///
/// ```yaml
/// fair_share: { lane_depth: 10, hold: 10000 }
/// ```
public struct FairShareSettings: Sendable, Equatable, Codable {
    /// The most visible messages the dispatcher lets stand on one lane (a pool's normal or
    /// high-priority queue) before it holds tasks back; 0 turns fair share off (every task goes
    /// to its lane at once, first come first served). Enough to keep the pool's workers fed
    /// between the dispatcher's refills; a task admitted later waits behind at most this many.
    /// A lane whose workers hold more messages than this (a big fleet) is kept as deep as they
    /// hold, so the autoscalers, which count a lane's messages, keep growing a pool while tasks
    /// are held (see the dispatcher's `laneRoom`).
    public var laneDepth: Int = 10
    /// The most tasks one dispatcher holds (all lanes together). Beyond it the dispatcher stops
    /// receiving, and the rest of the dispatch queue waits there in arrival order: fair share is
    /// exact while the backlog fits, which tenants' `max_in_flight` quotas can guarantee.
    public var hold: Int = 10_000

    public init(laneDepth: Int = 10, hold: Int = 10_000) {
        self.laneDepth = laneDepth
        self.hold = hold
    }

    /// Whether tasks are held back at all.
    public var isEnabled: Bool { laneDepth > 0 }

    enum CodingKeys: String, CodingKey {
        case laneDepth = "lane_depth", hold
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = FairShareSettings()
        laneDepth = try c.decodeIfPresent(Int.self, forKey: .laneDepth) ?? d.laneDepth
        hold = try c.decodeIfPresent(Int.self, forKey: .hold) ?? d.hold
    }

    /// Rejects values outside what SQS and memory allow (an SQS queue has at most 120,000
    /// messages in flight; a held task costs about a kilobyte).
    func validate() throws(ConfigurationError) {
        guard (0...10_000).contains(laneDepth) else {
            throw ConfigurationError(message: "lane_depth must be 0 (off) to 10000", field: "fair_share.lane_depth")
        }
        guard (1...100_000).contains(hold) else {
            throw ConfigurationError(message: "hold must be 1 to 100000", field: "fair_share.hold")
        }
    }
}
