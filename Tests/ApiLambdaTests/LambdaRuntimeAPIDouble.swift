import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SDQTestSupport

/// A loopback Lambda Runtime API peer written from its published contract: `GET
/// /2018-06-01/runtime/invocation/next` hands out queued events with the `Lambda-Runtime-*` headers;
/// `POST …/invocation/{id}/response`, `…/invocation/{id}/error` and `…/init/error` answer 202 and
/// are recorded.
actor RuntimeAPIState {
    struct Posted: Sendable {
        var kind: String  // response, error, init-error
        var requestID: String
        var errorType: String?
        var body: Data
    }

    typealias Event = (id: String, payload: Data, trace: String?, deadlineInMillis: Int64)
    private var events: [Event] = []
    private var waiters: [CheckedContinuation<Event, Never>] = []
    private(set) var posted: [Posted] = []
    /// Set by ``close()``: a `next` that arrives later (a request the runtime sent just before it
    /// was stopped, read by the server after the test ended) is answered at once too, or the
    /// server's shutdown would wait for it forever.
    private var closed = false

    /// Queues an event whose deadline lies `deadlineInMillis` after it is handed out.
    func enqueue(id: String, payload: Data, trace: String? = nil, deadlineInMillis: Int64 = RuntimeAPIDouble.deadlineOffsetMillis) {
        let event = (id, payload, trace, deadlineInMillis)
        if waiters.isEmpty {
            events.append(event)
        } else {
            waiters.removeFirst().resume(returning: event)
        }
    }

    func next() async -> Event {
        if !events.isEmpty { return events.removeFirst() }
        if closed { return ("closed", Data(), nil, 0) }
        return await withCheckedContinuation { waiters.append($0) }
    }

    func record(_ post: Posted) { posted.append(post) }

    /// Answers every `next` still waiting (a runtime that is gone or no longer driven), so the
    /// server can shut down.
    func close() {
        closed = true
        for waiter in waiters { waiter.resume(returning: ("closed", Data(), nil, 0)) }
        waiters.removeAll()
    }
}

enum RuntimeAPIDouble {
    static let deadlineOffsetMillis: Int64 = 30_000

    static func run<T: Sendable>(_ body: @Sendable (String, RuntimeAPIState) async throws -> T) async throws -> T {
        let state = RuntimeAPIState()
        let router = Router()
        router.get("/2018-06-01/runtime/invocation/next") { _, _ -> Response in
            let event = await state.next()
            var headers = HTTPFields()
            headers[HTTPField.Name("Lambda-Runtime-Aws-Request-Id")!] = event.id
            let deadline = Int64(Date().timeIntervalSince1970 * 1000) + event.deadlineInMillis
            headers[HTTPField.Name("Lambda-Runtime-Deadline-Ms")!] = String(deadline)
            headers[HTTPField.Name("Lambda-Runtime-Invoked-Function-Arn")!] = "arn:aws:lambda:us-east-1:123456789012:function:sdq-api"
            if let trace = event.trace { headers[HTTPField.Name("Lambda-Runtime-Trace-Id")!] = trace }
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: event.payload)))
        }
        router.post("/2018-06-01/runtime/invocation/{id}/{kind}") { request, context -> Response in
            var request = request
            let body = Data((try await request.collectBody(upTo: 16 << 20)).readableBytesView)
            let id = context.parameters.get("id") ?? ""
            let kind = context.parameters.get("kind") ?? ""
            let errorType = request.headers[HTTPField.Name("Lambda-Runtime-Function-Error-Type")!]
            await state.record(.init(kind: kind, requestID: id, errorType: errorType, body: body))
            return Response(status: .accepted)
        }
        router.post("/2018-06-01/runtime/init/error") { request, _ -> Response in
            var request = request
            let body = Data((try await request.collectBody(upTo: 1 << 20)).readableBytesView)
            let errorType = request.headers[HTTPField.Name("Lambda-Runtime-Function-Error-Type")!]
            await state.record(.init(kind: "init-error", requestID: "", errorType: errorType, body: body))
            return Response(status: .accepted)
        }
        return try await withLoopbackServer(router) { port in
            do {
                let value = try await body("127.0.0.1:\(port)", state)
                await state.close()
                return value
            } catch {
                await state.close()
                throw error
            }
        }
    }
}
