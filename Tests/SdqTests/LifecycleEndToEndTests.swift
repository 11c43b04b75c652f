import ApiLambda
import Dispatcher
import Foundation
import InferenceService
import ResultWriter
import SDQMessages
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import Synchronization
import Testing

/// A transport whose results queue refuses sends while `outage` is set, and which records every
/// message sent or published on any queue or topic (to check what goes on the wire).
final class RecordingTransport: Transport {
    let base: any Transport
    let names: ResourceNames
    let outage = Mutex(false)
    let sent = Mutex<[(destination: String, attributes: [String: String])]>([])

    init(_ base: any Transport, names: ResourceNames) {
        self.base = base
        self.names = names
    }

    struct Queue: MessageQueue {
        let base: any MessageQueue
        let owner: RecordingTransport
        var name: String { base.name }
        func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError) {
            if name == owner.names.resultsQueue, owner.outage.withLock({ $0 }) { throw .storage("results queue outage (test)") }
            owner.sent.withLock { $0.append((name, attributes)) }
            try await base.send(body: body, attributes: attributes, delay: delay)
        }
        func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError) -> [QueueMessage] {
            try await base.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
        }
        func delete(receiptHandle: String) async throws(TransportError) { try await base.delete(receiptHandle: receiptHandle) }
        func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError) {
            try await base.changeVisibility(receiptHandle: receiptHandle, timeout: timeout)
        }
        func depth() async throws(TransportError) -> QueueDepth { try await base.depth() }
    }

    struct Topic_: Topic {
        let base: any Topic
        let owner: RecordingTransport
        var name: String { base.name }
        func publish(body: String, attributes: [String: String]) async throws(TransportError) {
            owner.sent.withLock { $0.append((name, attributes)) }
            try await base.publish(body: body, attributes: attributes)
        }
    }

    func queue(named name: String) -> any MessageQueue { Queue(base: base.queue(named: name), owner: self) }
    func topic(named name: String) -> any Topic { Topic_(base: base.topic(named: name), owner: self) }
    var objects: any ObjectStore { base.objects }
    var tasks: any TaskStore { base.tasks }
    func provision(_ topology: Topology) async throws(TransportError) { try await base.provision(topology) }
}

@Suite struct LifecycleEndToEndTests {
    static func notificationsProbe(_ fixture: StackFixture) async throws -> any MessageQueue {
        let name = "\(fixture.names.stack)-probe"
        try await fixture.transport.provision(Topology(
            queues: [QueueSpec(name: name, visibilityTimeout: .seconds(30), maxReceiveCount: 0, deadLetterQueue: nil)],
            topics: [fixture.names.notificationsTopic],
            subscriptions: [SubscriptionSpec(topic: fixture.names.notificationsTopic, queue: name)]))
        return fixture.queue(name)
    }

    static func services(_ context: StackContext, worker: Bool) -> [any Service] {
        var services: [any Service] = [
            Dispatcher(context: context, logger: testLogger(), receiveWait: .milliseconds(200)),
            ResultWriter(context: context, logger: testLogger(), receiveWait: .milliseconds(200)),
        ]
        if worker {
            services.append(InferenceWorker(
                context: context, runtime: EmulatorRuntime(stepDelay: .milliseconds(5)),
                configuration: InferenceConfiguration(pool: "default", receiveWait: .milliseconds(200), progressInterval: .milliseconds(100)),
                logger: testLogger()))
        }
        return services
    }

    /// The API's cancel writes the terminal state, then its `cancelled` result cannot be sent. The
    /// task's own message, met by the dispatcher, still ends it: one manifest, one notification.
    @Test(arguments: TransportKind.available)
    func aCancelWhoseResultIsLostStillEndsWithAManifestAndANotification(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind, pools: try fastPools())
        let probe = try await Self.notificationsProbe(fixture)
        let recording = RecordingTransport(fixture.transport, names: fixture.names)
        let context = StackContext(transport: recording, names: fixture.names, pools: fixture.context.pools)
        let handler = APIHandler(context: context, logger: testLogger())
        let submitted = await handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(#"{"prompt": "a fox", "seed": 3}"#.utf8)))
        #expect(submitted.status == 202)
        let id = try JSONDecoder().decode(TaskDocument.self, from: submitted.body).id
        recording.outage.withLock { $0 = true }
        let cancelled = await handler.handle(APIRequest(method: "DELETE", path: "/v1/tasks/\(id)"))
        #expect(cancelled.status == 200)
        #expect(!recording.sent.withLock { $0.contains { $0.destination == fixture.names.resultsQueue } })
        recording.outage.withLock { $0 = false }
        try await whileRunning(Self.services(context, worker: false)) { _ in
            #expect(await eventually(timeout: .seconds(30)) { try await fixture.transport.tasks.get(id: id)?.announcedAt != nil })
        }
        let record = try #require(try await fixture.transport.tasks.get(id: id))
        #expect(record.status == .cancelled && record.manifestKey == ResultWriter.manifestKey(for: id))
        let manifest = try #require(try await fixture.transport.objects.get(key: ResultWriter.manifestKey(for: id)))
        #expect(try JSONValue.parse(manifest.data)["status"]?.stringValue == "cancelled")
        let notifications = try await probe.receive(maxMessages: 10, wait: .seconds(2), visibilityTimeout: .seconds(30))
        #expect(notifications.count == 1)
        #expect(notifications.first.flatMap { try? JSONValue.parse(Data($0.body.utf8))["status"]?.stringValue } == "cancelled")
    }

    /// The same when the task was already on a worker's lane: the worker meets the cancel.
    @Test(arguments: TransportKind.available)
    func aCancelOnAPoolLaneIsEndedByTheWorkerThatMeetsIt(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind, pools: try fastPools())
        let recording = RecordingTransport(fixture.transport, names: fixture.names)
        let context = StackContext(transport: recording, names: fixture.names, pools: fixture.context.pools)
        let handler = APIHandler(context: context, logger: testLogger())
        let submitted = await handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(#"{"prompt": "a fox", "seed": 3}"#.utf8)))
        let id = try JSONDecoder().decode(TaskDocument.self, from: submitted.body).id
        // Dispatch only (no worker), then cancel with the results queue down.
        try await whileRunning([Dispatcher(context: context, logger: testLogger(), receiveWait: .milliseconds(200))]) { _ in
            #expect(await eventually { try await fixture.transport.tasks.get(id: id)?.status == .dispatched })
        }
        recording.outage.withLock { $0 = true }
        #expect(await handler.handle(APIRequest(method: "DELETE", path: "/v1/tasks/\(id)")).status == 200)
        recording.outage.withLock { $0 = false }
        try await whileRunning(Self.services(context, worker: true)) { _ in
            #expect(await eventually(timeout: .seconds(30)) { try await fixture.transport.tasks.get(id: id)?.announcedAt != nil })
        }
        #expect(try await fixture.transport.objects.exists(key: ResultWriter.manifestKey(for: id)))
        #expect(try await fixture.transport.tasks.get(id: id)?.status == .cancelled)
    }

    /// Every message sdq puts on a queue or topic carries the task id and a W3C `traceparent`,
    /// the cancel's and the failures' included; nothing is traced here, so each comes from the
    /// message's own context or a fresh one.
    @Test(arguments: TransportKind.available)
    func everyMessageOnTheWireCarriesTraceContext(_ kind: TransportKind) async throws {
        let fixture = try await StackFixture.make(kind, pools: try fastPools())
        let recording = RecordingTransport(fixture.transport, names: fixture.names)
        let context = StackContext(transport: recording, names: fixture.names, pools: fixture.context.pools)
        let handler = APIHandler(context: context, logger: testLogger(), webhookPolicy: OutboundURLPolicy(allowPrivate: true))
        func submit(_ body: String) async throws -> String {
            let response = await handler.handle(APIRequest(method: "POST", path: "/v1/tasks", body: Data(body.utf8)))
            #expect(response.status == 202)
            return try JSONDecoder().decode(TaskDocument.self, from: response.body).id
        }
        let ok = try await submit(#"{"prompt": "a fox", "seed": 3, "callback": {"url": "http://127.0.0.1:9/hook", "events": ["running", "completed"]}}"#)
        // Past its deadline before the dispatcher sees it: failed by the dispatcher, not run.
        let unknown = try await submit(#"{"prompt": "a fox", "deadline_seconds": 0.001}"#)
        try await Task.sleep(for: .milliseconds(20))
        let cancelled = try await submit(#"{"prompt": "a fox", "priority": "high"}"#)
        #expect(await handler.handle(APIRequest(method: "DELETE", path: "/v1/tasks/\(cancelled)")).status == 200)
        try await whileRunning(Self.services(context, worker: true)) { _ in
            for id in [ok, unknown, cancelled] {
                #expect(await eventually(timeout: .seconds(30)) { try await fixture.transport.tasks.get(id: id)?.announcedAt != nil })
            }
        }
        let sent = recording.sent.withLock { $0 }
        let destinations = Set(sent.map(\.destination))
        for expected in [fixture.names.tasksTopic, fixture.names.resultsQueue, fixture.names.poolQueue("default"),
                         fixture.names.notificationsTopic, fixture.names.webhooksQueue] {
            #expect(destinations.contains(expected), "nothing was sent to \(expected)")
        }
        for message in sent where message.destination != fixture.names.notificationsTopic {
            let traceparent = message.attributes[MessageAttribute.traceparent] ?? ""
            #expect(traceparent.split(separator: "-").count == 4, "\(message.destination): traceparent \(traceparent)")
            #expect(TraceCarrier.xrayHeader(traceparent: traceparent) != nil, "\(message.destination): no AWSTraceHeader form")
            #expect(!(message.attributes[MessageAttribute.taskID] ?? "").isEmpty, "\(message.destination): no task id")
        }
        // The failure and the cancel ended on results that carried trace context too.
        #expect(try await fixture.transport.tasks.get(id: unknown)?.error?.code == "deadline_exceeded")
        #expect(try await fixture.transport.tasks.get(id: cancelled)?.status == .cancelled)
    }
}
