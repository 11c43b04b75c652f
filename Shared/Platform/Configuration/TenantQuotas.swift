import SDQAWS

/// A tenant's quotas, from its keys' `quotas` object in the key file:
///
/// ```yaml
/// quotas:
///   submissions_per_minute: 60   # sustained submission rate (token bucket)
///   burst: 10                    # submissions at once after a quiet spell (default: the rate
///                                # rounded up, i.e. one minute's worth)
///   max_in_flight: 20            # tasks queued, dispatched or running at once
/// ```
///
/// Both are kept in the task store, not in memory, so they hold however many API instances run
/// (``TaskStore/takeSubmission(tenant:rate:now:)``, ``TaskStore/create(_:inFlightLimit:)``).
/// A tenant with neither costs the store nothing extra.
public struct TenantQuotas: Sendable, Equatable {
    /// The submission rate, if limited.
    public var submissionRate: SubmissionRate?
    /// The most tasks in flight at once, if limited.
    public var maxInFlight: Int?

    public init(submissionRate: SubmissionRate? = nil, maxInFlight: Int? = nil) {
        self.submissionRate = submissionRate
        self.maxInFlight = maxInFlight
    }

    /// No quota.
    public static let none = TenantQuotas()

    /// The settings a `quotas` object may hold.
    static let settings: Set<String> = ["submissions_per_minute", "burst", "max_in_flight"]

    /// Parses a key's `quotas` object; `path` names it in errors (`keys[2].quotas`).
    static func parse(_ json: JSONValue, path: String) throws(ConfigurationError) -> TenantQuotas {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError(message: "\(path).\(message)", field: "SDQ_API_KEYS_FILE") }
        guard case .object(let object) = json else { throw ConfigurationError(message: "\(path) must be an object", field: "SDQ_API_KEYS_FILE") }
        for name in object.keys where !settings.contains(name) {
            throw fail("\(name) is not a quota (\(settings.sorted().joined(separator: ", ")))")
        }
        var quotas = TenantQuotas()
        if let raw = object["max_in_flight"] {
            guard let value = raw.integerValue, (1...1_000_000).contains(value) else { throw fail("max_in_flight must be a whole number 1...1000000") }
            quotas.maxInFlight = Int(value)
        }
        if let raw = object["submissions_per_minute"] {
            guard let rate = raw.numberValue, rate.isFinite, rate >= 0.01, rate <= 1_000_000 else {
                throw fail("submissions_per_minute must be a number 0.01...1000000")
            }
            var burst = max(1, Int(rate.rounded(.up)))
            if let raw = object["burst"] {
                guard let value = raw.integerValue, (1...1_000_000).contains(value) else { throw fail("burst must be a whole number 1...1000000") }
                burst = Int(value)
            }
            quotas.submissionRate = SubmissionRate(perMinute: rate, burst: burst)
        } else if object["burst"] != nil {
            throw fail("burst needs submissions_per_minute")
        }
        return quotas
    }
}
