import ArgumentParser
import Foundation
import SDQPlatform

/// `sdq usage`: tasks by outcome, images and GPU seconds per day or pool (`GET /v1/usage`).
struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "Show your usage: tasks by outcome, images and GPU seconds per day or pool.")

    @OptionGroup var server: ServerOptions
    @Option(help: "From (inclusive): epoch milliseconds or an RFC 3339 date-time (default: 30 days before --to).") var from: String?
    @Option(help: "To (exclusive): epoch milliseconds or an RFC 3339 date-time (default: now).") var to: String?
    @Option(name: .customLong("group-by"), help: "day or pool.") var groupBy: String = "day"
    @Option(help: "One tenant (operator keys only; they see every tenant without it).") var tenant: String?
    @Flag(help: "Print the answer as JSON.") var json = false

    func run() async throws {
        try await reportingFailures {
            let report = try await server.client().usage(from: from, to: to, groupBy: groupBy, tenant: tenant)
            if json {
                print(String(decoding: report.serialized(), as: UTF8.self))
                return
            }
            print(Self.table(report, groupBy: groupBy))
        }
    }

    /// The report as a table: one row per tenant and day (or pool), then the totals.
    static func table(_ report: JSONValue, groupBy: String) -> String {
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
        func row(_ tenant: String, _ group: String, _ figures: JSONValue?) -> String {
            let outcomes = figures?["outcomes"]
            func count(_ name: String) -> String { String(Int(outcomes?[name]?.numberValue ?? 0)) }
            let gpu = String(format: "%.1f", figures?["gpu_seconds"]?.numberValue ?? 0)
            return pad(tenant, 16) + pad(group, 14) + pad(String(Int(figures?["tasks"]?.numberValue ?? 0)), 8) + pad(count("succeeded"), 10)
                + pad(count("failed"), 8) + pad(count("cancelled"), 10) + pad(String(Int(figures?["images"]?.numberValue ?? 0)), 8) + gpu
        }
        var lines = [
            "usage \(report["from"]?.stringValue ?? "?") to \(report["to"]?.stringValue ?? "?")",
            pad("TENANT", 16) + pad(groupBy.uppercased(), 14) + pad("TASKS", 8) + pad("SUCCEEDED", 10) + pad("FAILED", 8)
                + pad("CANCELLED", 10) + pad("IMAGES", 8) + "GPU SECONDS",
        ]
        for group in report["groups"]?.arrayValue ?? [] {
            lines.append(row(group["tenant"]?.stringValue ?? "?", group[groupBy]?.stringValue ?? "?", group))
        }
        lines.append(row("total", "", report["totals"]))
        if report["complete"] == .bool(false) { lines.append("(incomplete: the period holds more tasks than one request adds up; narrow it)") }
        return lines.joined(separator: "\n")
    }
}
