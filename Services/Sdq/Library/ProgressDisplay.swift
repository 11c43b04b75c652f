import Foundation
import SDQPlatform
import Synchronization

/// Shows a task's progress on standard error: a redrawn bar on a terminal, one line per status
/// change otherwise (logs stay readable).
final class ProgressDisplay: Sendable {
    private let enabled: Bool
    private let interactive: Bool
    private let last = Mutex<(status: TaskStatus?, drawn: Bool)>((nil, false))

    init(enabled: Bool) {
        self.enabled = enabled
        self.interactive = isatty(STDERR_FILENO) != 0
    }

    func update(_ document: TaskDocument) { update(TaskUpdate(document: document)) }

    /// Shows `update`: on a terminal a bar with the step, the ETA and the place in line.
    func update(_ update: TaskUpdate) {
        guard enabled else { return }
        let line: String? = last.withLock { state in
            if interactive {
                state.drawn = true
                return "\r" + Self.describe(update) + "   "
            }
            guard state.status != update.status else { return nil }
            state.status = update.status
            return "\(update.id)  \(update.status.rawValue)\n"
        }
        if let line { FileHandle.standardError.write(Data(line.utf8)) }
    }

    /// `ID  [######------] 12/20 steps  ETA 3.1s  running`, or while it waits
    /// `ID  [------------] queued, 3rd in line, ETA 12s`.
    static func describe(_ update: TaskUpdate) -> String {
        let width = 24
        let filled = Int((update.fraction * Double(width)).rounded())
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        var parts = ["\(update.id)  [\(bar)]"]
        if let step = update.step, let steps = update.steps {
            parts.append("\(step)/\(steps) steps")
        } else {
            parts.append("\(Int(update.fraction * 100))%")
        }
        parts.append(update.status.rawValue + (update.queuePosition.map { ", #\($0) in line" } ?? ""))
        if let eta = update.etaSeconds { parts.append("ETA \(eta < 10 ? String(format: "%.1f", eta) : String(Int(eta.rounded())))s") }
        return parts.joined(separator: "  ")
    }

    func finish() {
        let drawn = last.withLock { $0.drawn }
        if enabled, interactive, drawn { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Formats a finished task's stage timings.
enum TimingsReport {
    static func describe(_ document: TaskDocument, elapsed: Duration) -> String {
        let t = document.timings
        func span(_ from: Int64?, _ to: Int64?) -> String {
            guard let from, let to else { return "-" }
            return "\(to - from) ms"
        }
        var parts = [
            "queue \(span(t.submittedAt, t.dispatchedAt))",
            "dispatch→start \(span(t.dispatchedAt, t.startedAt))",
            "runtime \(span(t.runtimeStartedAt, t.runtimeFinishedAt))",
            "store+finalise \(span(t.runtimeFinishedAt, t.finishedAt))",
            "total \(span(t.submittedAt, t.finishedAt))",
        ]
        parts.append("wall \(elapsed.milliseconds) ms")
        let seeds = document.images.map { String($0.seed) }.joined(separator: ",")
        let head = "task \(document.id) \(document.status.rawValue)" + (seeds.isEmpty ? "" : " seed \(seeds)")
        return head + "\ntimings: " + parts.joined(separator: ", ")
    }
}
