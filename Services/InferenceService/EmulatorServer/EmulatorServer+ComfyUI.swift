import Foundation
import Hummingbird
import HummingbirdWebSocket
import InferenceService
import NIOCore
import SDQPlatform

/// The ComfyUI side of the emulator, following ComfyUI's `server.py`: `POST /prompt` (validated
/// like ComfyUI: an unknown node class is an `invalid_prompt` error naming the node only in
/// `error.details`, other invalid nodes come back as `node_errors`), `GET /history/{prompt_id}`,
/// `GET /queue` (`queue_running`, `queue_pending`), `POST /queue` (`delete` pending prompts by id,
/// `clear` them all), `POST /interrupt` (with a `prompt_id`, only when that prompt is the one
/// running; without, whatever runs), `GET /view`, `GET /system_stats`, and the `/ws?clientId=`
/// websocket, which streams `progress` (`{value, max, prompt_id, node}`) and `executing`
/// (`node: null` when a prompt is done) messages for that client's prompts, and (as ComfyUI started
/// with a `--preview-method`) binary `PREVIEW_IMAGE` frames: uint32 1, uint32 2 (PNG), the image,
/// at most one per ``previewInterval``. Prompts run one at a time on the same emulated GPU as the
/// A1111 routes, in the order queued.
actor ComfyState {
    /// One websocket frame for a client.
    enum Frame: Sendable {
        case text(String)
        case binary(Data)
    }
    /// Least time between two preview frames of a prompt.
    static let previewInterval: Duration = .milliseconds(250)
    private var lastPreview: ContinuousClock.Instant?

    struct Prompt: Sendable {
        var id: String
        var workflow: ComfyWorkflow
        var outputNode: String
        var clientID: String
        var samplerNode: String
        /// The output node's `filename_prefix` (ComfyUI names files `<prefix>_<counter>_.png`).
        var filenamePrefix = "ComfyUI"
        var number = 0
    }

    private var listeners: [String: [Int: AsyncStream<Frame>.Continuation]] = [:]
    private var nextListener = 0

    /// Messages for `clientID`'s prompts until `unsubscribe`.
    func subscribe(_ clientID: String) -> (Int, AsyncStream<Frame>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Frame.self)
        nextListener += 1
        listeners[clientID, default: [:]][nextListener] = continuation
        return (nextListener, stream)
    }

    /// The `status` message a newly registered socket gets first.
    func greet(_ clientID: String) {
        send(clientID, type: "status", data: [
            "status": .object(["exec_info": .object(["queue_remaining": .int(pending.count + (running == nil ? 0 : 1))])]),
            "sid": .string(clientID),
        ])
    }

    func unsubscribe(_ clientID: String, _ token: Int) {
        listeners[clientID]?.removeValue(forKey: token)?.finish()
    }

    func send(_ clientID: String, type: String, data: [String: JSONValue]) {
        guard let targets = listeners[clientID], !targets.isEmpty else { return }
        let text = String(decoding: JSONValue.object(["type": .string(type), "data": .object(data)]).serialized(), as: UTF8.self)
        for continuation in targets.values { continuation.yield(.text(text)) }
    }

    private var history: [String: JSONValue] = [:]
    private var files: [String: Data] = [:]
    /// The next file counter of each prefix, as ComfyUI's SaveImage continues it.
    private var counters: [String: Int] = [:]
    private var running: Prompt?
    private var interrupted = false
    private var number = 0
    /// Prompts waiting, in order; the stream only wakes the executor, which takes the first that is
    /// still here (a deleted or cleared prompt is skipped).
    private var pending: [Prompt] = []
    let queue: AsyncStream<Void>
    private let input: AsyncStream<Void>.Continuation

    init() { (queue, input) = AsyncStream.makeStream(of: Void.self) }

    func enqueue(_ prompt: Prompt) -> Int {
        number += 1
        var prompt = prompt
        prompt.number = number
        pending.append(prompt)
        input.yield()
        return number
    }

    /// The next waiting prompt, now running; nil when the queue was emptied meanwhile.
    func take() -> Prompt? {
        guard !pending.isEmpty else { return nil }
        let prompt = pending.removeFirst()
        running = prompt
        interrupted = false
        // As execution.py begins a prompt.
        send(prompt.clientID, type: "execution_start", data: ["prompt_id": .string(prompt.id), "timestamp": .number(Date().timeIntervalSince1970 * 1000)])
        return prompt
    }

    /// `POST /queue`: drops waiting prompts (never the running one), by id or all.
    func delete(_ ids: [String], clear: Bool) {
        pending.removeAll { clear || ids.contains($0.id) }
    }

    /// `GET /queue` as ComfyUI writes it: `[number, prompt_id, prompt, extra_data, outputs]`.
    func queueDocument() -> JSONValue {
        func item(_ prompt: Prompt) -> JSONValue {
            [.number(Double(prompt.number)), .string(prompt.id), [:], ["client_id": .string(prompt.clientID)], [.string(prompt.outputNode)]]
        }
        return ["queue_running": .array(running.map { [item($0)] } ?? []), "queue_pending": .array(pending.map(item))]
    }

    func entry(_ id: String) -> JSONValue? { history[id] }
    func file(_ name: String) -> Data? { files[name] }

    /// Interrupts the running prompt: any, or only `promptID` when given.
    func interrupt(promptID: String?) {
        guard let running, promptID == nil || promptID == running.id else { return }
        interrupted = true
    }

    /// Streams the step to the prompt's client; false once the running prompt was interrupted.
    func progress(_ prompt: Prompt, _ value: Double) -> Bool {
        let steps = Double(prompt.workflow.steps)
        send(prompt.clientID, type: "progress", data: [
            "value": .number((value * steps).rounded()), "max": .number(steps), "prompt_id": .string(prompt.id),
            "node": .string(prompt.samplerNode),
        ])
        return !interrupted
    }

    /// Whether the prompt's client should get a preview now (at most one per ``previewInterval``).
    func previewDue(_ prompt: Prompt) -> Bool {
        guard let targets = listeners[prompt.clientID], !targets.isEmpty,
            lastPreview.map({ ContinuousClock.now - $0 >= Self.previewInterval }) ?? true
        else { return false }
        lastPreview = .now
        return true
    }

    /// Sends a binary preview frame (`PREVIEW_IMAGE`, PNG) to the prompt's client.
    func sendPreview(_ prompt: Prompt, png: Data) {
        let frame = Data([0, 0, 0, 1, 0, 0, 0, 2]) + png
        for continuation in (listeners[prompt.clientID] ?? [:]).values { continuation.yield(.binary(frame)) }
    }

    func finish(_ prompt: Prompt, images: [RuntimeImage]?, error: RuntimeError?) {
        if running?.id == prompt.id { running = nil }
        send(prompt.clientID, type: "executing", data: ["node": .null, "prompt_id": .string(prompt.id)])
        var outputs: [String: JSONValue] = [:]
        var messages: [JSONValue] = [.array([.string("execution_start"), .object(["prompt_id": .string(prompt.id)])])]
        let status: String
        if let images {
            var refs: [JSONValue] = []
            for image in images {
                let counter = counters[prompt.filenamePrefix, default: 1]
                counters[prompt.filenamePrefix] = counter + 1
                let digits = String(counter)
                let name = "\(prompt.filenamePrefix)_\(String(repeating: "0", count: max(0, 5 - digits.count)))\(digits)_.png"
                files[name] = image.png
                refs.append(.object(["filename": .string(name), "subfolder": .string(""), "type": .string("output")]))
            }
            outputs[prompt.outputNode] = .object(["images": .array(refs)])
            messages.append(.array([.string("execution_success"), .object(["prompt_id": .string(prompt.id)])]))
            status = "success"
        } else if error?.code == "cancelled" {
            messages.append(.array([.string("execution_interrupted"), .object(["prompt_id": .string(prompt.id)])]))
            status = "error"
        } else {
            messages.append(.array([.string("execution_error"), .object([
                "prompt_id": .string(prompt.id), "node_id": .string(prompt.outputNode),
                "exception_message": .string(error?.message ?? "failed"),
            ])]))
            status = "error"
        }
        history[prompt.id] = .object([
            "outputs": .object(outputs),
            "status": .object(["status_str": .string(status), "completed": .bool(status == "success"), "messages": .array(messages)]),
        ])
    }
}

extension EmulatorServer {
    static func addComfyRoutes(to router: Router<BasicRequestContext>, state: ComfyState, faults: EmulatorFaults, models: [String]) {
        router.get("/system_stats") { _, _ in
            json(.object(["system": .object(["os": .string("emulator")]), "devices": .array([.object(["name": .string("emulated")])])]))
        }
        router.post("/prompt") { request, _ in
            var request = request
            let buffer = try await request.collectBody(upTo: 16 << 20)
            guard let body = try? JSONValue.parse(Data(buffer.readableBytesView)), case .object(let nodes)? = body["prompt"] else {
                return json(.object(["error": .object(["type": .string("invalid_prompt"), "message": .string("prompt must be an object")]),
                                     "node_errors": .object([:])]), status: .badRequest)
            }
            switch ComfyWorkflow.parse(nodes) {
            case .failure(let error) where error.unknownClass:
                return json(.object([
                    "error": .object([
                        "type": .string("invalid_prompt"), "message": .string(error.message),
                        "details": .string("Node ID '#\(error.node)'"), "extra_info": .object([:]),
                    ]),
                    "node_errors": .object([:]),
                ]), status: .badRequest)
            case .failure(let error):
                var nodeErrors: [String: JSONValue] = [:]
                if !error.node.isEmpty {
                    nodeErrors[error.node] = .object([
                        "errors": .array([.object(["type": .string("invalid_node"), "message": .string(error.message), "details": .string("")])]),
                        "dependent_outputs": .array([]), "class_type": .string(error.classType),
                    ])
                }
                return json(.object([
                    "error": .object(["type": .string("prompt_outputs_failed_validation"), "message": .string(error.message)]),
                    "node_errors": .object(nodeErrors),
                ]), status: .badRequest)
            case .success(let workflow):
                let sorted = nodes.sorted { $0.key < $1.key }
                let output = sorted.first { $0.value["class_type"]?.stringValue == "SaveImage" }?.key ?? "9"
                let sampler = sorted.first { $0.value["class_type"]?.stringValue?.hasPrefix("KSampler") == true }?.key ?? ""
                let id = UUID().uuidString.lowercased()
                let client = body["client_id"]?.stringValue ?? ""
                let prefix = nodes[output]?["inputs"]?["filename_prefix"]?.stringValue ?? "ComfyUI"
                let number = await state.enqueue(
                    .init(id: id, workflow: workflow, outputNode: output, clientID: client, samplerNode: sampler, filenamePrefix: prefix))
                return json(.object(["prompt_id": .string(id), "number": .number(Double(number)), "node_errors": .object([:])]))
            }
        }
        router.get("/history/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let entry = await state.entry(id) else { return json(.object([:])) }
            return json(.object([id: entry]))
        }
        router.get("/view") { request, _ in
            guard let name = request.uri.queryParameters.get("filename"), let data = await state.file(name) else {
                return Response(status: .notFound)
            }
            return Response(status: .ok, headers: [.contentType: "image/png"], body: ResponseBody(byteBuffer: ByteBuffer(data: data)))
        }
        router.get("/queue") { _, _ in json(await state.queueDocument()) }
        router.post("/queue") { request, _ in
            var request = request
            let body = try? JSONValue.parse(Data(try await request.collectBody(upTo: 1 << 20).readableBytesView))
            let ids = (body?["delete"]?.arrayValue ?? []).compactMap(\.stringValue)
            await state.delete(ids, clear: body?["clear"] == .bool(true))
            return Response(status: .ok)
        }
        router.post("/interrupt") { request, _ in
            var request = request
            let body = try? JSONValue.parse(Data(try await request.collectBody(upTo: 1 << 20).readableBytesView))
            await state.interrupt(promptID: body?["prompt_id"]?.stringValue)
            return Response(status: .ok)
        }
    }

    /// The `/ws?clientId=` route: forwards the client's messages until it disconnects.
    static func comfyWebSocketRouter(state: ComfyState) -> Router<BasicWebSocketRequestContext> {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.ws("/ws") { inbound, outbound, context in
            let client = context.request.uri.queryParameters.get("clientId") ?? ""
            let (token, messages) = await state.subscribe(client)
            // As ComfyUI does once the socket is registered: the queue's status, with the sid.
            await state.greet(client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await _ in inbound {}  // until the client closes
                }
                group.addTask {
                    for await frame in messages {
                        switch frame {
                        case .text(let text): try await outbound.write(.text(text))
                        case .binary(let data): try await outbound.write(.binary(ByteBuffer(bytes: data)))
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
            await state.unsubscribe(client, token)
        }
        return router
    }

    /// Runs queued prompts one at a time on the emulated GPU until cancelled.
    static func executeComfyPrompts(_ state: ComfyState, runtime: EmulatorRuntime, gpu: AsyncSemaphore, defaultModel: String) async {
        for await _ in state.queue {
            guard await gpu.wait() else { return }
            guard let prompt = await state.take() else {
                gpu.signal()
                continue
            }
            do throws(RuntimeError) {
                let job = prompt.workflow.job(model: defaultModel)
                let picture = job.emulatorParameters(index: 0)
                let images = try await runtime.run(job) { value in
                    // As ComfyUI's sampler callback: a preview of the step (rendered off the actor).
                    if value < 1, await state.previewDue(prompt), let png = try? EmulatorImage.preview(picture, fraction: value) {
                        await state.sendPreview(prompt, png: png)
                    }
                    return await state.progress(prompt, value)
                }
                await state.finish(prompt, images: images, error: nil)
            } catch {
                await state.finish(prompt, images: nil, error: error)
            }
            gpu.signal()
        }
    }
}
