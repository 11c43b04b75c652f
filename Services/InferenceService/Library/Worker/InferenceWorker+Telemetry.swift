import Foundation
import SDQMessages
import SDQPlatform
import Synchronization
import Tracing

extension InferenceWorker {
    /// Runs one task inside the worker's `inference` span (a child of the dispatcher's, from the
    /// task's trace context) and records the GPU metrics: queue wait, idle gap since the previous
    /// task, model switches and the runtime's duration by outcome.
    func execute(_ prepared: PreparedTask) async -> FinishedTask {
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
            let (gap, switched, first) = gpuClock.start(at: started, model: task.model)
            if let gap { SDQMetrics.gpuIdleGap(pool: pool, .milliseconds(gap)) }
            if switched { SDQMetrics.modelSwitch(pool: pool) }
            // A task that may load another model waits for its claim first: a task cancelled in its
            // lane never costs a model switch.
            let outcome = await executeOnRuntime(traced, awaitingClaim: switched || first)
            let finished = EpochClock.nowMillis()
            gpuClock.finish(at: finished)
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
    func settle(_ finished: FinishedTask, ledger: InFlightLedger) async {
        let prepared = finished.prepared
        let parent = prepared.trace ?? prepared.task.trace
        await withSpan("upload", context: TraceCarrier.context(parent), ofKind: .producer) { span in
            span.attributes["sdq.service"] = "inference-service"
            span.attributes["sdq.task_id"] = prepared.task.id
            await settleUntraced(finished, ledger: ledger)
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

/// When the worker's GPU last finished and on which model, for the idle-gap and model-switch
/// metrics.
final class GPUClock: Sendable {
    private struct State {
        var lastFinish: Int64?
        var lastModel: String?
    }
    private let state = Mutex(State())

    /// Marks a task's start; returns the idle gap since the previous task, whether the model
    /// changed, and whether this is the worker's first task (the runtime's model is not known).
    func start(at millis: Int64, model: String) -> (gap: Int64?, switched: Bool, first: Bool) {
        state.withLock { state in
            let gap = state.lastFinish.map { max(0, millis - $0) }
            let switched = state.lastModel.map { $0 != model && !model.isEmpty } ?? false
            let first = state.lastModel == nil
            if !model.isEmpty { state.lastModel = model }
            return (gap, switched, first)
        }
    }

    func finish(at millis: Int64) { state.withLock { $0.lastFinish = millis } }
}
