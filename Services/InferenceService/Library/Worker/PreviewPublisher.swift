import Foundation
import Logging
import SDQPlatform
import Synchronization

/// Stores the live previews of the tasks a worker runs, beside the GPU and never on its path:
/// the backend drops each preview into the run's ``PreviewSlot`` without waiting, and this loop
/// (a sibling of the worker's pipeline) takes the newest one of each running task once per
/// `interval`, overwrites `previews/{task}/preview.{ext}` and records it on the task
/// (``TaskEvent/previewed(key:at:)``), which the status document links and the event stream
/// sends. A task's first preview waits until it has run for `interval`, so a task shorter than
/// that costs no preview writes at all. A task that ended meanwhile refuses the record update and is no longer watched; an
/// upload or store failure skips that preview (the next one replaces it anyway).
final class PreviewPublisher: Sendable {
    private let running = Mutex([String: (slot: PreviewSlot, since: ContinuousClock.Instant)]())

    init() {}

    /// The key a task's preview of `preview`'s type is stored under.
    static func key(taskID: String, preview: RuntimePreview) -> String {
        "previews/\(taskID)/preview.\(preview.fileExtension)"
    }

    /// Watches `slot` for `taskID` while its run lasts.
    func track(_ taskID: String, _ slot: PreviewSlot) {
        running.withLock { $0[taskID] = (slot, .now) }
    }

    /// Stops watching `taskID` (its run ended).
    func untrack(_ taskID: String) {
        _ = running.withLock { $0.removeValue(forKey: taskID) }
    }

    /// Publishes previews every `interval` until cancelled.
    func run(every interval: Duration, objects: any ObjectStore, tasks: any TaskStore, logger: Logger) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let now = ContinuousClock.now
            let due = running.withLock { running in
                running.compactMap { id, entry in now - entry.since >= interval ? entry.slot.take().map { (id, $0) } : nil }
            }
            for (taskID, preview) in due {
                await publish(preview, of: taskID, objects: objects, tasks: tasks, logger: logger)
            }
        }
    }

    /// Stores one preview and records it on the task.
    func publish(_ preview: RuntimePreview, of taskID: String, objects: any ObjectStore, tasks: any TaskStore, logger: Logger) async {
        let key = Self.key(taskID: taskID, preview: preview)
        do {
            try await objects.put(key: key, data: preview.data, contentType: preview.contentType)
            switch try await tasks.apply(.previewed(key: key, at: EpochClock.nowMillis()), to: taskID) {
            case .applied: break
            case .conflict, .notFound: untrack(taskID)
            }
        } catch {
            logger.debug("a live preview was not stored", metadata: ["task_id": "\(taskID)", "error": "\(error)"])
        }
    }
}
