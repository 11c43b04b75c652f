import Foundation
import SDQMessages
import SDQPlatform
import Synchronization
import Tracing

extension InferenceWorker {
    /// Runs one task inside the worker's `inference` span (a child of the dispatcher's, from the
    /// task's trace context) and records the GPU metrics: queue wait, idle gap since the previous
    /// task (between the runtime windows, as the runtime saw them), model switches and the
    /// runtime's duration by outcome. `awaitingClaim`: the task may make the runtime load another
    /// model (see ``executeOnRuntime(_:window:awaitingClaim:)``).
    func execute(_ prepared: PreparedTask, window: RuntimeWindow, awaitingClaim: Bool) async -> FinishedTask {
        let task = prepared.task
        let pool = configuration.pool
        return await withSpan("inference", context: TraceCarrier.context(task.trace), ofKind: .consumer) { span in
            span.attributes["sdq.service"] = "inference-service"
            span.attributes["sdq.task_id"] = task.id
            span.attributes["sdq.pool"] = pool
            span.attributes["sdq.model"] = task.model
            span.attributes["sdq.attempt"] = prepared.message.receiveCount
            var traced = prepared
            traced.trace = TraceCarrier.current()
            let started = EpochClock.nowMillis()
            if prepared.message.sentAtMillis > 0 {
                let wait = max(0, started - prepared.message.sentAtMillis)
                span.attributes["sdq.queue_wait_ms"] = Int(wait)
                // The wait on the pool queue, as an event at the moment the worker took the task.
                var waited = SpanAttributes()
                waited["sdq.queue_wait_ms"] = Int(wait)
                span.addEvent(SpanEvent(name: "dequeued", attributes: waited))
                SDQMetrics.queueWait(pool: pool, .milliseconds(wait))
            }
            if awaitingClaim, gpuClock.hasRun { SDQMetrics.modelSwitch(pool: pool) }
            // A task that may load another model waits for its claim first: a task cancelled in its
            // lane never costs a model switch.
            let outcome = await executeOnRuntime(traced, window: window, awaitingClaim: awaitingClaim)
            let finished = EpochClock.nowMillis()
            if let gap = gpuClock.finish(window) { SDQMetrics.gpuIdleGap(pool: pool, .milliseconds(gap)) }
            span.attributes["sdq.outcome"] = outcome.label
            SDQMetrics.inference(pool: pool, outcome: outcome.label, .milliseconds(finished - started))
            if case .failed(_, let error, _) = outcome {
                span.setStatus(SpanStatus(code: .error, message: error.code))
            }
            return outcome
        }
    }

    /// Settles a finished task (stores its images, sends its result) in an `upload` span under the
    /// task's `inference` span, so the result-writer's span continues the chain.
    func settleTraced(_ finished: FinishedTask) async -> MessageDisposition {
        let prepared = finished.prepared
        let parent = prepared.trace ?? prepared.task.trace
        return await withSpan("upload", context: TraceCarrier.context(parent), ofKind: .producer) { span in
            span.attributes["sdq.service"] = "inference-service"
            span.attributes["sdq.task_id"] = prepared.task.id
            return await settleUntraced(finished)
        }
    }
}

extension FinishedTask {
    /// The task this is about.
    var prepared: PreparedTask {
        switch self {
        case .completed(let prepared, _, _), .failed(let prepared, _, _), .dropped(let prepared, _), .handBack(let prepared):
            prepared
        }
    }

    /// Low-cardinality outcome for spans and metrics.
    var label: String {
        switch self {
        case .completed: "succeeded"
        case .failed: "failed"
        case .dropped: "dropped"
        case .handBack: "handed_back"
        }
    }
}

/// When the worker's runtime last finished a job, for the idle-gap and model-switch metrics (the
/// model order is ``WorkerMachine``'s).
final class GPUClock: Sendable {
    private struct State {
        var lastFinish: Int64?
    }
    private let state = Mutex(State())

    /// Whether a job ran before.
    var hasRun: Bool { state.withLock { $0.lastFinish != nil } }

    /// Records a finished job's window; returns the runtime's idle time before it began (nil for
    /// the first job, or one the runtime never began).
    func finish(_ window: RuntimeWindow) -> Int64? {
        guard let started = window.startedAt, let finished = window.finishedAt else { return nil }
        return state.withLock { state in
            let gap = state.lastFinish.map { max(0, started - $0) }
            state.lastFinish = max(state.lastFinish ?? finished, finished)
            return gap
        }
    }
}
