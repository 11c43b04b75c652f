import ArgumentParser
import Foundation
import SDQPlatform

/// `sdq ls`: the tenant's tasks, newest first, a page at a time (`GET /v1/tasks`).
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List your tasks, newest first.")

    @OptionGroup var server: ServerOptions
    @Option(help: "Only tasks in this state (queued, dispatched, running, succeeded, failed, cancelled).") var status: TaskStatus?
    @Option(help: "Only tasks of this pool.") var pool: String?
    @Option(help: "Submitted at or after: epoch milliseconds or an RFC 3339 date-time.") var since: String?
    @Option(help: "Submitted before: epoch milliseconds or an RFC 3339 date-time.") var until: String?
    @Option(help: "Tasks per page (1-100).") var limit: Int = 20
    @Option(help: "Continue from a page's next cursor.") var cursor: String?
    @Flag(help: "Follow every page to the end.") var all = false
    @Flag(help: "Print each page as JSON (tasks and next_cursor).") var json = false

    func run() async throws {
        try await reportingFailures {
            let client = try server.client()
            var cursor = self.cursor
            if !json { print(Self.header) }
            repeat {
                let page = try await client.list(status: status, pool: pool, since: since, until: until, limit: limit, cursor: cursor)
                if json {
                    let tasks = try page.tasks.map { try $0.jsonValue() }
                    print(String(decoding: JSONValue.object(["tasks": .array(tasks), "next_cursor": page.nextCursor.map(JSONValue.string) ?? .null]).serialized(), as: UTF8.self))
                } else {
                    for task in page.tasks { print(Self.row(task)) }
                }
                cursor = page.nextCursor
            } while all && cursor != nil
            if !json, !all, let cursor { printError("more: sdq ls --cursor \(cursor)") }
        }
    }

    static let header = "ID                          STATUS      POOL          SUBMITTED (UTC)       PROGRESS  IMAGES"

    static func row(_ task: TaskDocument) -> String {
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
        let submitted = task.timings.submittedAt.map { millis -> String in
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
            return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
        } ?? "-"
        let progress = "\(Int((task.progress.isFinite ? min(1, max(0, task.progress)) : 0) * 100))%"
        return pad(task.id, 28) + pad(task.status.rawValue, 12) + pad(task.pool, 14) + pad(submitted, 22) + pad(progress, 10) + "\(task.images.count)"
    }
}

extension TaskStatus: ExpressibleByArgument {}
