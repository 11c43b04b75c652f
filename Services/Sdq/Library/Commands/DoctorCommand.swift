import ArgumentParser
import Foundation
import SDQAWS
import SDQAWSTransport
import SDQPlatform
import SDQStack

/// `sdq doctor`: checks a stack and prints a checklist with the fix for each failure; exits 1
/// when something failed (warnings alone exit 0).
///
/// On AWS (`SDQ_TRANSPORT=aws`): every resource of the configuration exists and matches it
/// (queues, redrive policies, dead-letter queues, the subscription, the bucket's lifecycle and
/// encryption, the table's TTL and index), access probes with the identity it runs under, and
/// `iam:SimulatePrincipalPolicy` for each `--role`. On every transport: dead-letter depths, stale
/// workers and each pool's health.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "doctor", abstract: "Check a stack's resources, access and fleet.")

    @Flag(help: "Print the checks as JSON.")
    var json = false

    @Option(name: .customLong("role"), help: "SERVICE=ARN: simulate that service's role (api, dispatcher, inference, result-writer); AWS only.")
    var roles: [String] = []

    func validate() throws {
        for role in roles where role.split(separator: "=", maxSplits: 1).count != 2 {
            throw ValidationError("--role takes SERVICE=ARN, got \(role)")
        }
    }

    func run() async throws {
        var checks: [StackCheck] = []
        try await reportingFailures {
            let (configuration, logger) = try prepareEnvironment(defaultLevel: .error)
            let context = try await StackContext.open(configuration, logger: logger)
            if let aws = context.transport as? AWSTransport {
                var map: [String: String] = [:]
                for role in roles {
                    let parts = role.split(separator: "=", maxSplits: 1).map(String.init)
                    map[parts[0]] = parts[1]
                }
                checks += await AWSStackDoctor(transport: aws, topology: context.topology, roles: map).run()
            } else if !roles.isEmpty {
                checks.append(
                    StackCheck(area: "access", subject: "--role", check: "role's policy", status: .skipped, detail: "the embedded transport has no IAM"))
            }
            checks += await FleetChecks(context: context, includeDeadLetters: !(context.transport is AWSTransport)).run()
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let worst = checks.map(\.status).max() ?? .ok
            let report = DoctorReport(status: worst == .failed ? "failed" : worst == .warning ? "warning" : "ok", checks: checks)
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(Self.checklist(checks))
        }
        if checks.contains(where: { $0.status == .failed }) { throw ExitCode(1) }
    }

    /// The report `--json` prints.
    struct DoctorReport: Encodable {
        var status: String
        var checks: [StackCheck]
    }

    static func checklist(_ checks: [StackCheck]) -> String {
        var lines: [String] = []
        var area = ""
        for check in checks {
            if check.area != area {
                area = check.area
                lines.append(area)
            }
            let mark = switch check.status {
            case .ok: "  ok    "
            case .skipped: "  skip  "
            case .warning: "  WARN  "
            case .failed: "  FAIL  "
            }
            lines.append("\(mark)\(check.subject): \(check.check) — \(check.detail)")
            if let fix = check.fix, check.status != .ok { lines.append("        fix: \(fix)") }
        }
        let failed = checks.filter { $0.status == .failed }.count, warned = checks.filter { $0.status == .warning }.count
        lines.append(failed == 0 ? "\(checks.count) checks, \(warned) warnings: the stack is healthy" : "\(failed) of \(checks.count) checks failed, \(warned) warnings")
        return lines.joined(separator: "\n")
    }
}
