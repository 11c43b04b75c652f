import Foundation
import Hummingbird
import HummingbirdWebSocket
import InferenceService
import NIOCore
import SDQPlatform

/// The ComfyUI side of the emulator: `POST /prompt` (validated like ComfyUI: unknown node classes
/// and dangling links come back as `node_errors`), `GET /history/{prompt_id}`, `GET /view`,
/// `POST /interrupt`, `GET /system_stats`, and the `/ws?clientId=` websocket, which streams
/// `progress` (`{value, max, prompt_id, node}`) and `executing` (`node: null` when a prompt is done)
/// messages for that client's prompts. Prompts run one at a time on the same emulated GPU as the
/// A1111 routes, in the order queued.
actor ComfyState {
    struct Prompt: Sendable {
        var id: String
        var workflow: ComfyWorkflow
        var outputNode: String
        var clientID: String
        var samplerNode: String
    }

    private var listeners: [String: [Int: AsyncStream<String>.Continuation]] = [:]
    private var nextListener = 0

    /// Messages for `clientID`'s prompts until `unsubscribe`.
    func subscribe(_ clientID: String) -> (Int, AsyncStream<String>) {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        nextListener += 1
        listeners[clientID, default: [:]][nextListener] = continuation
        return (nextListener, stream)
    }

    func unsubscribe(_ clientID: String, _ token: Int) {
        listeners[clientID]?.removeValue(forKey: token)?.finish()
    }

    func send(_ clientID: String, type: String, data: [String: JSONValue]) {
        guard let targets = listeners[clientID], !targets.isEmpty else { return }
        let text = String(decoding: JSONValue.object(["type": .string(type), "data": .object(data)]).serialized(), as: UTF8.self)
        for continuation in targets.values { continuation.yield(text) }
    }

    private var history: [String: JSONValue] = [:]
    private var files: [String: Data] = [:]
    private var running: String?
    private var interrupted = false
    private var number = 0
    let queue: AsyncStream<Prompt>
    private let input: AsyncStream<Prompt>.Continuation

    init() { (queue, input) = AsyncStream.makeStream(of: Prompt.self) }

    func enqueue(_ prompt: Prompt) -> Int {
        number += 1
        input.yield(prompt)
        return number
    }

    func entry(_ id: String) -> JSONValue? { history[id] }
    func file(_ name: String) -> Data? { files[name] }
    func interrupt() { if running != nil { interrupted = true } }

    func begin(_ id: String) {
        running = id
        interrupted = false
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

    func finish(_ prompt: Prompt, images: [RuntimeImage]?, error: RuntimeError?) {
        running = nil
        send(prompt.clientID, type: "executing", data: ["node": .null, "prompt_id": .string(prompt.id)])
        var outputs: [String: JSONValue] = [:]
        var messages: [JSONValue] = [.array([.string("execution_start"), .object(["prompt_id": .string(prompt.id)])])]
        let status: String
        if let images {
            var refs: [JSONValue] = []
            for (index, image) in images.enumerated() {
                let name = "ComfyUI_\(prompt.id.prefix(8))_\(index).png"
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
                let number = await state.enqueue(
                    .init(id: id, workflow: workflow, outputNode: output, clientID: client, samplerNode: sampler))
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
        router.post("/interrupt") { _, _ in
            await state.interrupt()
            return json(.object([:]))
        }
    }

    /// The `/ws?clientId=` route: forwards the client's messages until it disconnects.
    static func comfyWebSocketRouter(state: ComfyState) -> Router<BasicWebSocketRequestContext> {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.ws("/ws") { inbound, outbound, context in
            let client = context.request.uri.queryParameters.get("clientId") ?? ""
            let (token, messages) = await state.subscribe(client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await _ in inbound {}  // until the client closes
                }
                group.addTask {
                    for await text in messages { try await outbound.write(.text(text)) }
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
        for await prompt in state.queue {
            guard await gpu.wait() else { return }
            await state.begin(prompt.id)
            do throws(RuntimeError) {
                let images = try await runtime.run(prompt.workflow.job(model: defaultModel)) { await state.progress(prompt, $0) }
                await state.finish(prompt, images: images, error: nil)
            } catch {
                await state.finish(prompt, images: nil, error: error)
            }
            gpu.signal()
        }
    }
}
