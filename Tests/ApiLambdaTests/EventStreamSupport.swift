import Foundation
@testable import ApiLambda
import SDQPlatform
import SDQTestSupport

/// A server-sent-events reader as a browser is one (WHATWG: lines, `field: value`, comments,
/// blank line dispatch), fed with pieces of the stream as they arrive.
actor EventReader {
    struct Event: Sendable, Equatable {
        var id: String?
        var event: String
        var data: String
        var json: JSONValue? { try? JSONValue.parse(Data(data.utf8)) }
    }

    private(set) var events: [Event] = []
    private(set) var comments = 0
    private(set) var retry: Int?
    private(set) var ended = false
    private var pending = ""
    private var current = (id: String?.none, event: "message", data: [String]())

    func feed(_ data: Data) {
        pending += String(decoding: data, as: UTF8.self)
        while let newline = pending.firstIndex(of: "\n") {
            let line = String(pending[..<newline])
            pending = String(pending[pending.index(after: newline)...])
            take(line)
        }
    }

    func end() { ended = true }

    private func take(_ line: String) {
        if line.isEmpty {
            if !current.data.isEmpty { events.append(Event(id: current.id, event: current.event, data: current.data.joined(separator: "\n"))) }
            current = (nil, "message", [])
            return
        }
        if line.hasPrefix(":") {
            comments += 1
            return
        }
        let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let field = String(parts[0])
        var value = parts.count > 1 ? String(parts[1]) : ""
        if value.hasPrefix(" ") { value.removeFirst() }
        switch field {
        case "id": current.id = value
        case "event": current.event = value
        case "data": current.data.append(value)
        case "retry": retry = Int(value)
        default: break
        }
    }

    var names: [String] { events.map(\.event) }

    /// Waits (polling briefly) until an event named `name` arrived; returns it.
    func wait(for name: String, timeout: Duration = .seconds(10)) async -> Event? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let event = events.last(where: { $0.event == name }) { return event }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}

extension EventReader {
    /// Runs `response`'s stream into a new reader in a task of its own; the reader says when it ended.
    static func reading(_ response: APIResponse) -> (EventReader, Task<Void, any Error>) {
        let reader = EventReader()
        let task = Task {
            guard let stream = response.stream else {
                await reader.end()
                return
            }
            let pieces = AsyncStream<Data>.makeStream()
            let forward = Task {
                for await piece in pieces.stream { await reader.feed(piece) }
            }
            do {
                try await stream.produce { pieces.continuation.yield($0) }
            } catch {
                pieces.continuation.finish()
                await forward.value
                await reader.end()
                throw error
            }
            pieces.continuation.finish()
            await forward.value
            await reader.end()
        }
        return (reader, task)
    }
}
