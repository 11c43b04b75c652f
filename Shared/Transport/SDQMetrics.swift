import Metrics
import SDQCore

/// The metrics that run a fleet (swift-metrics; exported over OTLP when ``Telemetry`` is on, and
/// free no-ops otherwise). Durations are timers (histograms in seconds); dimensions are low
/// cardinality: pool, outcome, lane, event, queue.
public enum SDQMetrics {
    /// Time a task waited on its pool queue before a worker started it.
    public static func queueWait(pool: String, _ duration: Duration) {
        Timer(label: "sdq_queue_wait", dimensions: [("pool", pool)]).record(duration: duration)
    }

    /// Time the runtime spent on a task.
    public static func inference(pool: String, outcome: String, _ duration: Duration) {
        Timer(label: "sdq_inference_duration", dimensions: [("pool", pool), ("outcome", outcome)]).record(duration: duration)
    }

    /// Submission to terminal state.
    public static func endToEnd(pool: String, outcome: String, _ duration: Duration) {
        Timer(label: "sdq_task_duration", dimensions: [("pool", pool), ("outcome", outcome)]).record(duration: duration)
    }

    /// Time the GPU sat idle between one task's end and the next one's start on a worker.
    public static func gpuIdleGap(pool: String, _ duration: Duration) {
        Timer(label: "sdq_gpu_idle_gap", dimensions: [("pool", pool)]).record(duration: duration)
    }

    /// A worker ran a task on another model than the one before (a checkpoint switch).
    public static func modelSwitch(pool: String) {
        Counter(label: "sdq_model_switches_total", dimensions: [("pool", pool)]).increment()
    }

    /// A task handed back for another attempt (`reason`: runtime_error, input_fetch, store, upload).
    public static func retry(pool: String, reason: String) {
        Counter(label: "sdq_retries_total", dimensions: [("pool", pool), ("reason", reason)]).increment()
    }

    /// A message found on a dead-letter queue.
    public static func deadLettered(queue: String) {
        Counter(label: "sdq_dead_lettered_total", dimensions: [("queue", queue)]).increment()
    }

    /// A webhook attempt (`outcome`: delivered, retrying, failed).
    public static func webhook(event: String, outcome: String) {
        Counter(label: "sdq_webhook_deliveries_total", dimensions: [("event", event), ("outcome", outcome)]).increment()
    }

    /// Tasks the dispatcher holds back for a lane (fair share), `sdq_dispatch_held_tasks`.
    public static func held(pool: String, lane: String, count: Int) {
        Gauge(label: "sdq_dispatch_held_tasks", dimensions: [("pool", pool), ("lane", lane)]).record(count)
    }

    /// A worker's state at each heartbeat (every 10 s): `sdq_worker_ready` 1 when it takes tasks
    /// (idle or running), 0 while starting or draining; `sdq_runtime_unreachable` 1 when its
    /// runtime does not answer; `sdq_gpu_busy_fraction`, the share of the last minute its runtime
    /// generated. The pool-health alarms read them (deploy/sam/template.yaml).
    public static func worker(pool: String, ready: Bool, runtimeUnreachable: Bool, gpuBusyFraction: Double) {
        Gauge(label: "sdq_worker_ready", dimensions: [("pool", pool)]).record(ready ? 1 : 0)
        Gauge(label: "sdq_runtime_unreachable", dimensions: [("pool", pool)]).record(runtimeUnreachable ? 1 : 0)
        Gauge(label: "sdq_gpu_busy_fraction", dimensions: [("pool", pool)]).record(gpuBusyFraction)
    }

    /// Messages waiting on a pool lane (`lane`: high, normal), sampled by the dispatcher.

    public static func backlog(pool: String, lane: String, visible: Int, inFlight: Int) {
        Gauge(label: "sdq_backlog_messages", dimensions: [("pool", pool), ("lane", lane), ("state", "visible")]).record(visible)
        Gauge(label: "sdq_backlog_messages", dimensions: [("pool", pool), ("lane", lane), ("state", "in_flight")]).record(inFlight)
    }
}
