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

    func update(_ document: TaskDocument) {
        guard enabled else { return }
        let progress = document.progress.isFinite ? min(1, max(0, document.progress)) : 0
        let line: String? = last.withLock { state in
            if interactive {
                state.drawn = true
                let width = 24
                let filled = Int((progress * Double(width)).rounded())
                let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                return "\r\(document.id)  [\(bar)] \(Int(progress * 100))%  \(document.status.rawValue)   "
            }
            guard state.status != document.status else { return nil }
            state.status = document.status
            return "\(document.id)  \(document.status.rawValue)\n"
        }
        if let line { FileHandle.standardError.write(Data(line.utf8)) }
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
