import Foundation
import Logging

/// Finds `SDQ_*` variables that no part of sdq reads, so a typo (`SDQ_RUNTIME_ULR`) is reported
/// at start instead of passing silently as a setting.
public enum SettingsCheck {
    /// Every `SDQ_*` variable a service or the `sdq` command reads. A new setting is added here in
    /// the same change that reads it (`SettingsCheckTests` holds the sources to this list).
    public static let knownVariables: Set<String> = [
        "SDQ_API_KEYS", "SDQ_API_KEYS_FILE", "SDQ_AUDIT_RETENTION_DAYS", "SDQ_CONSOLE_DIR", "SDQ_DATA_DIR", "SDQ_EMULATOR_STEP_MS", "SDQ_FETCH_ALLOW_PRIVATE", "SDQ_HEALTH_FILE",
        "SDQ_HTTP_HOST", "SDQ_HTTP_PORT", "SDQ_LAMBDA_RESPONSE_STREAMING", "SDQ_LOG_FORMAT", "SDQ_MODEL_DIR", "SDQ_POOL", "SDQ_POOLS_FILE", "SDQ_PREVIEW_INTERVAL_MS", "SDQ_PUBLIC_URL",
        "SDQ_RUNTIME", "SDQ_RUNTIME_QUEUE_AHEAD", "SDQ_RUNTIME_URL", "SDQ_SERVER", "SDQ_STACK", "SDQ_STREAM_TOKEN_SECRET", "SDQ_TRANSPORT", "SDQ_TRUSTED_PROXIES", "SDQ_WEBHOOK_ALLOW_PRIVATE",
    ]

    /// Variables of sdq's own tests, benchmarks and scripts (never read by a service): not reported.
    public static let toolingPrefixes = ["SDQ_TEST_", "SDQ_CI_", "SDQ_CONTRACT_", "SDQ_BENCH_"]
    public static let toolingVariables: Set<String> = ["SDQ_REQUIRE_AWS_TESTS", "SDQ_SIGV4_SUITE", "SDQ_FUZZ_SECONDS"]

    /// One unread variable and the known name it most likely meant.
    public struct Unknown: Sendable, Equatable {
        public let name: String
        public let suggestion: String?
        public init(name: String, suggestion: String?) {
            self.name = name
            self.suggestion = suggestion
        }
    }

    /// The `SDQ_*` names in `environment` that sdq does not read, sorted.
    public static func unknownVariables(in environment: [String: String]) -> [Unknown] {
        environment.keys.filter { name in
            name.hasPrefix("SDQ_") && !knownVariables.contains(name) && !toolingVariables.contains(name)
                && !toolingPrefixes.contains(where: name.hasPrefix)
        }
        .sorted()
        .map { Unknown(name: $0, suggestion: closestKnown(to: $0)) }
    }

    /// Logs a warning per unread variable.
    public static func warnAboutUnknownVariables(
        in environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger
    ) {
        for unknown in unknownVariables(in: environment) {
            let hint = unknown.suggestion.map { " (did you mean \($0)?)" } ?? ""
            logger.warning(
                "\(unknown.name) is set but no part of sdq reads it; it has no effect\(hint)",
                metadata: ["variable": "\(unknown.name)"])
        }
    }

    /// The known name within edit distance 3 of `name`, if one is closest.
    static func closestKnown(to name: String) -> String? {
        let ranked = knownVariables.map { ($0, distance(Array(name), Array($0))) }.filter { $0.1 <= 3 }
            .sorted { ($0.1, $0.0) < ($1.1, $1.0) }
        return ranked.first?.0
    }

    /// Levenshtein distance.
    private static func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}
