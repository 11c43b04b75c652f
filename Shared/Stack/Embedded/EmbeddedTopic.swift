import Foundation
import SDQPlatform

/// A topic in the embedded database: publishing copies the message into every subscribed queue
/// whose filter policy matches (raw message delivery: body and attributes unchanged).
struct EmbeddedTopic: Topic {
    let name: String
    let database: EmbeddedDatabase
    let signal: ArrivalSignal
    var time = EpochTime.system

    func publish(body: String, attributes: [String: String]) async throws(TransportError) {
        let topics = try await database.query("SELECT 1 FROM topics WHERE name = ?", [.text(name)])
        guard !topics.isEmpty else { throw .notFound("topic \(name)") }
        let subscriptions = try await database.query(
            "SELECT queue, filter_policy FROM subscriptions WHERE topic = ? ORDER BY queue", [.text(name)])
        for subscription in subscriptions {
            guard let queue = subscription.text("queue") else { continue }
            if let text = subscription.text("filter_policy"), let data = text.data(using: .utf8) {
                guard let policy = try? JSONDecoder().decode(FilterPolicy.self, from: data) else { continue }
                guard policy.matches(attributes) else { continue }
            }
            try await EmbeddedQueue.insert(
                into: queue, body: body, attributes: attributes, database: database, signal: signal, time: time)
        }
    }
}
