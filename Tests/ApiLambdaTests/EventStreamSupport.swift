import Foundation
@testable import ApiLambda
import SDQPlatform
import SDQTestSupport

/// A server-sent-events reader as a browser is one (``ServerSentEventParser``), fed with pieces
/// of the stream as they arrive.
actor EventReader {
    typealias Event = ServerSentEventParser.Event

    private(set) var events: [Event] = []
    private(set) var ended = false
    private var parser = ServerSentEventParser()
    var comments: Int { parser.comments }
    var retry: Int? { parser.retry }

    func feed(_ data: Data) {
        events += parser.feed(data)
    }

    func end() { ended = true }

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
