import AsyncHTTPClient
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import NIOHTTP1
import SDQPlatform
import Synchronization

/// Drives a ComfyUI server over HTTP on localhost: `POST /prompt` (the task's API-format
/// workflow, with a client id), then `GET /history/{prompt_id}` until the prompt completes, then
/// `GET /view` for each output image. `node_errors` in the answer to `/prompt` — on a 400, or on a
/// 200 where ComfyUI queued what was valid — fail the task for good, naming the node (from
/// `node_errors`, or from `error.details` where ComfyUI puts an unknown node class).
///
/// A cancel or a passed deadline touches only this task's prompt: it is deleted from ComfyUI's
/// queue if it still waits there (`POST /queue {"delete": [id]}`), and interrupted with its
/// `prompt_id` only when `GET /queue` shows it running (a ComfyUI that predates targeted
/// interrupts ignores the id and would stop whatever runs). A prompt found in neither ComfyUI's
/// queue nor its history (ComfyUI restarted, or someone cleared the queue) ends the run within
/// ``lostPromptCheck`` as `runtime_lost_prompt`, retryable; so does a ComfyUI that stops answering
/// for ``unreachableLimit``.
///
/// ComfyUI's `/ws?clientId=` websocket is opened before the prompt is queued. Its `progress`
/// messages (`value / max`) are the task's progress; its end-of-prompt messages (`executing` with
/// `node: null`, `execution_success`, `execution_error`, `execution_interrupted`) wake the history
/// read at once, so the GPU does not idle until the next poll. The outcome is still read from
/// `/history` (ComfyUI may send the end message a moment before it writes the history entry:
/// then the read is repeated every few milliseconds), and without a websocket the poll every
/// ``pollInterval`` finds it.
///
/// The next prompt is queued in ComfyUI while the current one runs (``queueAhead`` 1), so ComfyUI
/// starts it the moment the current one ends. Each run listens on its own websocket, under its
/// own client id (`<clientID>-<n>`): ComfyUI keeps one socket per client id, so two runs sharing
/// one would take each other's messages; the socket opens before the prompt is queued, while the
/// prompt ahead still runs, so it costs the GPU nothing. The ``RuntimeWindow`` runs from the
/// prompt's `execution_start` to its end message, as they arrive.
public struct ComfyUIBackend: RuntimeBackend {
    public let name = "comfyui"
    /// Whether the next prompt is queued in ComfyUI while one runs.
    public var prequeue = true
    /// One prompt waits in ComfyUI's queue while another runs (none without ``prequeue``).
    public var queueAhead: Int { prequeue ? 1 : 0 }
    public let baseURL: String
    public let client: HTTPClient
    /// How often `/history` is polled while a prompt runs.
    public var pollInterval: Duration
    /// Identifies this worker's prompts to ComfyUI (`client_id`).
    public let clientID: String
    /// How often a prompt without a history entry is looked for in ComfyUI's queue.
    public var lostPromptCheck: Duration
    /// How long ComfyUI may fail to answer while a prompt runs before the run is given up.
    public var unreachableLimit: Duration

    public init(
        baseURL: String, client: HTTPClient = .shared, pollInterval: Duration = .milliseconds(100), clientID: String = UUID().uuidString,
        lostPromptCheck: Duration = .seconds(2), unreachableLimit: Duration = .seconds(30)
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.client = client
        self.pollInterval = pollInterval
        self.clientID = clientID
        self.lostPromptCheck = lostPromptCheck
        self.unreachableLimit = unreachableLimit
    }

    /// Polls `GET /system_stats` until it answers 200 (or the task is cancelled).
    public func waitUntilReady() async {
        while !Task.isCancelled {
            if case .success = await request(.GET, "/system_stats", timeout: .seconds(3)) { return }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    public func run(_ job: RuntimeJob, window: RuntimeWindow, progress: @escaping @Sendable (Double) async -> Bool)
        async throws(RuntimeError) -> [RuntimeImage]
    {
        guard job.kind == .comfyuiWorkflow else {
            throw RuntimeError(code: "unsupported_kind", message: "comfyui runs comfyui_workflow, not \(job.kind)", retryable: false)
        }
        let nodes = try job.workflowNodes()
        let workflow = Self.namingFiles(nodes, for: job.taskID)
        // What made the images, as the workflow says: its sampler's seed and its checkpoint.
        let parsed = try? ComfyWorkflow.parse(nodes).get()
        let runClient = "\(clientID)-\(UInt64.random(in: 1...UInt64.max))"
        let body = JSONValue.object(["prompt": workflow, "client_id": .string(runClient)]).serialized()
        let watch = PromptWatch()
        let wsURL = "ws" + baseURL.dropFirst(4) + "/ws?clientId=\(runClient)"
        let polled: Result<JSONValue, RuntimeError> = await withTaskGroup(of: Void.self) { group in
            let previews = job.wantsPreviews ? window.previews : nil
            group.addTask { await Self.listen(wsURL, into: watch, previews: previews) }
            defer { group.cancelAll() }
            do throws(RuntimeError) {
                // The websocket first (briefly): a short prompt's end message must not be missed.
                await watch.connected.wait(timeout: .seconds(1))
                let answer = try await request(.POST, "/prompt", body: body).get()
                let accepted = try? JSONValue.parse(answer)
                guard let promptID = accepted?["prompt_id"]?.stringValue else {
                    throw RuntimeError(code: "runtime_error", message: "ComfyUI answered /prompt without a prompt_id", retryable: true)
                }
                // A 200 with node errors: ComfyUI queued the outputs that validated; the task is invalid.
                if let nodes = accepted?["node_errors"]?.objectValue, !nodes.isEmpty {
                    await cancel(promptID)
                    throw Self.promptError(status: 200, body: answer)
                }
                let queuedAt = EpochClock.nowMillis()
                window.submitted(at: queuedAt)
                watch.follow(promptID)
                defer {
                    window.started(at: watch.startedAt ?? queuedAt)
                    window.finished(at: watch.endedAt ?? EpochClock.nowMillis())
                }
                return .success(try await poll(promptID, watch: watch) { await progress(watch.progress) })
            } catch {
                return .failure(error)
            }
        }
        let entry = try polled.get()
        if entry["status"]?["status_str"]?.stringValue == "error" { throw Self.executionError(entry) }
        return try await fetchOutputs(entry, job: job).map { image in
            var image = image
            if let parsed {
                image.seed = parsed.seed
                if !parsed.checkpoint.isEmpty { image.model = parsed.checkpoint }
            }
            return image
        }
    }

    /// The workflow with every output node's `filename_prefix` made unique to the task
    /// (`<prefix>_<task id>`): ComfyUI answers a re-run of an unchanged workflow from its cache
    /// with the earlier run's file names, which may have been cleaned up since.
    static func namingFiles(_ nodes: [String: JSONValue], for taskID: String) -> JSONValue {
        guard !taskID.isEmpty else { return .object(nodes) }
        var renamed = nodes
        for (id, node) in nodes {
            guard case .object(var fields) = node, case .object(var inputs)? = fields["inputs"],
                let prefix = inputs["filename_prefix"]?.stringValue
            else { continue }
            inputs["filename_prefix"] = .string("\(prefix)_\(taskID)")
            fields["inputs"] = .object(inputs)
            renamed[id] = .object(fields)
        }
        return .object(renamed)
    }

    /// Feeds the websocket's messages into `watch` until cancelled or disconnected, and its
    /// binary preview frames into `previews` when given.
    static func listen(_ url: String, into watch: PromptWatch, previews: PreviewSlot? = nil) async {
        var logger = Logger(label: "sdq.comfyui.ws")
        logger.logLevel = .critical
        // ComfyUI (aiohttp) sends each message as one frame, and a preview image is larger than
        // the client's default 16 KiB frame limit: exceeding it would close the socket, losing
        // the prompt's progress and end messages. Previews come whether asked for or not.
        let configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 22)
        _ = try? await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, _, _ in
            for try await message in inbound.messages(maxSize: 1 << 22) {
                // ComfyUI greets a registered socket with a `status` message: from then on this
                // client's prompt messages reach it.
                watch.connected.signal()
                switch message {
                case .text(let text):
                    guard let event = try? JSONValue.parse(Data(text.utf8)) else { continue }
                    watch.observe(event)
                case .binary(let buffer):
                    guard let previews, let preview = Self.preview(fromFrame: Data(buffer.readableBytesView), following: watch.followed)
                    else { continue }
                    previews.offer(preview)
                }
            }
        }
        watch.connected.signal()  // not connected: nobody waits for it
    }

    /// The image of a binary websocket frame, as ComfyUI's `server.py` sends previews to the
    /// client whose prompt runs (only when ComfyUI runs with a `--preview-method`): a big-endian
    /// uint32 event type, then for `PREVIEW_IMAGE` (1) a uint32 image type (1 JPEG, 2 PNG) and
    /// the image; for `PREVIEW_IMAGE_WITH_METADATA` (4) a uint32 length, that many bytes of JSON
    /// (`prompt_id`, `image_type`, …) and the image. A frame of another prompt than `promptID`
    /// (when it says), another event (text, …) or a malformed one gives nil.
    static func preview(fromFrame frame: Data, following promptID: String?) -> RuntimePreview? {
        let bytes = [UInt8](frame)
        func uint32(_ offset: Int) -> Int? {
            guard bytes.count >= offset + 4 else { return nil }
            return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
        }
        switch uint32(0) {
        case 1?:
            guard let format = uint32(4), format == 1 || format == 2 else { return nil }
            return RuntimePreview(sniffing: Data(bytes[8...]))
        case 4?:
            guard let length = uint32(4), length >= 0, bytes.count >= 8 + length,
                let metadata = try? JSONValue.parse(Data(bytes[8..<8 + length]))
            else { return nil }
            if let promptID, let theirs = metadata["prompt_id"]?.stringValue, theirs != promptID { return nil }
            return RuntimePreview(sniffing: Data(bytes[(8 + length)...]))
        default:
            return nil
        }
    }

    /// Polls `/history/{promptID}` until the prompt completes or fails; cancels it when
    /// `shouldContinue` says stop; gives up (retryable) when ComfyUI lost the prompt or stopped
    /// answering.
    private func poll(_ promptID: String, watch: PromptWatch, shouldContinue: @Sendable () async -> Bool) async throws(RuntimeError)
        -> JSONValue
    {
        var lastQueueCheck = ContinuousClock.now
        var failingSince: ContinuousClock.Instant?
        while true {
            // Woken by the websocket's end message; once it came, the history entry is due any
            // moment, so it is read again every 2 ms.
            await watch.ended.wait(timeout: watch.hasEnded ? .milliseconds(2) : pollInterval)
            if Task.isCancelled {
                await cancel(promptID)
                throw RuntimeError(code: "cancelled", message: "the job was cancelled", retryable: true)
            }
            guard await shouldContinue() else {
                await cancel(promptID)
                throw RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false)
            }
            switch await request(.GET, "/history/\(promptID)", timeout: .seconds(10)) {
            case .success(let history):
                failingSince = nil
                if let entry = Self.ended(history, promptID) { return entry }
                guard ContinuousClock.now - lastQueueCheck >= lostPromptCheck else { continue }
                lastQueueCheck = .now
                guard case .success(let queue) = await request(.GET, "/queue", timeout: .seconds(10)),
                    !Self.queued(queue, promptID, runningOnly: false)
                else { continue }
                // It may have ended between the two reads: history once more before giving up.
                if case .success(let again) = await request(.GET, "/history/\(promptID)", timeout: .seconds(10)),
                    let entry = Self.ended(again, promptID)
                {
                    return entry
                }
                throw RuntimeError(
                    code: "runtime_lost_prompt",
                    message: "ComfyUI has prompt \(promptID) in neither its queue nor its history (restarted, or its queue was cleared)",
                    retryable: true)
            case .failure(let error):
                let since = failingSince ?? .now
                failingSince = since
                if ContinuousClock.now - since >= unreachableLimit {
                    throw RuntimeError(
                        code: "runtime_unavailable", message: "ComfyUI did not answer for \(unreachableLimit): \(error.message)", retryable: true)
                }
            }
        }
    }

    /// The history entry of `promptID` when it has ended (completed or failed).
    static func ended(_ history: Data, _ promptID: String) -> JSONValue? {
        guard let entry = (try? JSONValue.parse(history))?[promptID],
            entry["status"]?["completed"] == .bool(true) || entry["status"]?["status_str"]?.stringValue == "error"
        else { return nil }
        return entry
    }

    /// Whether `GET /queue` lists `promptID` as running (or, unless `runningOnly`, waiting).
    static func queued(_ queue: Data, _ promptID: String, runningOnly: Bool) -> Bool {
        let document = try? JSONValue.parse(queue)
        let lists = runningOnly ? ["queue_running"] : ["queue_running", "queue_pending"]
        return lists.contains { list in
            (document?[list]?.arrayValue ?? []).contains { $0[1]?.stringValue == promptID }
        }
    }

    /// Stops this prompt and no other: deleted from ComfyUI's queue if it waits there, interrupted
    /// by id only if it is the one running.
    private func cancel(_ promptID: String) async {
        let delete = JSONValue.object(["delete": .array([.string(promptID)])]).serialized()
        _ = await request(.POST, "/queue", body: delete, timeout: .seconds(5))
        if case .success(let queue) = await request(.GET, "/queue", timeout: .seconds(5)), Self.queued(queue, promptID, runningOnly: true) {
            let body = JSONValue.object(["prompt_id": .string(promptID)]).serialized()
            _ = await request(.POST, "/interrupt", body: body, timeout: .seconds(5))
        }
    }

    /// One file an output node saved, as `/history` lists it.
    struct OutputFile: Sendable, Equatable {
        var filename: String
        var subfolder: String
        var type: String
    }

    /// Every file the prompt's output nodes list, in node order: saved (`output`) and preview
    /// (`temp`) files under any key — `images` (also animated WebP), `gifs` (video nodes),
    /// `audio`, … — so a workflow that saves video or audio is not a task without outputs.
    static func outputFiles(_ entry: JSONValue) -> [OutputFile] {
        guard case .object(let outputs)? = entry["outputs"] else { return [] }
        var files: [OutputFile] = []
        for (_, output) in outputs.sorted(by: { $0.key < $1.key }) {
            guard case .object(let kinds) = output else { continue }
            // `images` first, then the other kinds by name.
            for (_, value) in kinds.sorted(by: { ($0.key == "images" ? 0 : 1, $0.key) < ($1.key == "images" ? 0 : 1, $1.key) }) {
                guard case .array(let listed) = value else { continue }
                for file in listed {
                    guard let name = file["filename"]?.stringValue, !name.isEmpty else { continue }
                    let type = file["type"]?.stringValue ?? "output"
                    guard type == "output" || type == "temp" else { continue }
                    files.append(OutputFile(filename: name, subfolder: file["subfolder"]?.stringValue ?? "", type: type))
                }
            }
        }
        return files
    }

    /// Downloads the files a completed prompt lists (``outputFiles(_:)``).
    private func fetchOutputs(_ entry: JSONValue, job: RuntimeJob) async throws(RuntimeError) -> [RuntimeImage] {
        var images: [RuntimeImage] = []
        for file in Self.outputFiles(entry) {
            let query = "filename=\(Self.encode(file.filename))&subfolder=\(Self.encode(file.subfolder))&type=\(file.type)"
            let data = try await request(.GET, "/view?\(query)").get()
            let contentType = MediaTypes.of(fileName: file.filename)
            if contentType == "image/png" {
                let size = PNGInfo.size(of: data)
                images.append(RuntimeImage(png: data, width: size?.width ?? job.width, height: size?.height ?? job.height, seed: job.seed))
            } else {
                images.append(RuntimeImage(png: data, width: 0, height: 0, seed: job.seed, contentType: contentType))
            }
        }
        guard !images.isEmpty else {
            throw RuntimeError(code: "workflow_invalid", message: "the workflow produced no output files (no SaveImage node?)", retryable: false)
        }
        return images
    }

    /// The error of a `/prompt` refusal: `node_errors` name the node and are final.
    static func promptError(status: Int, body: Data) -> RuntimeError {
        let answer = try? JSONValue.parse(body)
        if case .object(let nodes)? = answer?["node_errors"], let (id, node) = nodes.sorted(by: { $0.key < $1.key }).first {
            let type = node["class_type"]?.stringValue ?? "?"
            var first: JSONValue?
            if case .array(let errors)? = node["errors"] { first = errors.first }
            let message = first?["message"]?.stringValue ?? "invalid"
            let details = first?["details"]?.stringValue ?? ""
            return RuntimeError(
                code: "workflow_invalid", message: "node \(id) (\(type)): \(message)\(details.isEmpty ? "" : ": \(details)")", retryable: false)
        }
        if status == 400 {
            var message = answer?["error"]?["message"]?.stringValue ?? String(decoding: body.prefix(300), as: UTF8.self)
            // An unknown node class: ComfyUI names the node only here, as `Node ID '#<id>'`.
            if let details = answer?["error"]?["details"]?.stringValue, let start = details.range(of: "#") {
                let node = details[start.upperBound...].prefix { $0 != "'" && $0 != " " }
                if !node.isEmpty { message = "node \(node): \(message)" }
            }
            return RuntimeError(code: "workflow_invalid", message: message, retryable: false)
        }
        return SDWebUIBackend.classify(status: status, body: body)
    }

    /// The error of a prompt whose execution failed.
    static func executionError(_ entry: JSONValue) -> RuntimeError {
        if case .array(let messages)? = entry["status"]?["messages"] {
            for message in messages {
                guard case .array(let pair) = message, pair.count == 2, let kind = pair[0].stringValue else { continue }
                if kind == "execution_interrupted" {
                    // sdq's own cancel never gets here (it ends the run as `cancelled` first): someone
                    // else interrupted ComfyUI. The attempt failed; the task is retried while its
                    // receives last, like any runtime fault, and fails with this code after them.
                    return RuntimeError(
                        code: "runtime_interrupted", message: "ComfyUI interrupted the prompt, and sdq did not ask it to", retryable: true)
                }
                if kind == "execution_error" {
                    let text = pair[1]["exception_message"]?.stringValue ?? "execution failed"
                    let node = pair[1]["node_id"]?.stringValue.map { "node \($0): " } ?? ""
                    if text.localizedCaseInsensitiveContains("out of memory") {
                        return RuntimeError(code: "out_of_memory", message: node + text, retryable: false)
                    }
                    return RuntimeError(code: "workflow_failed", message: node + text, retryable: false)
                }
            }
        }
        return RuntimeError(code: "workflow_failed", message: "ComfyUI reported an error", retryable: false)
    }

    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? text
    }

    private func request(_ method: HTTPMethod, _ path: String, body: Data? = nil, timeout: TimeAmount = .minutes(5)) async
        -> Result<Data, RuntimeError>
    {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await client.execute(request, timeout: timeout)
            let data = Data(try await response.body.collect(upTo: 512 << 20).readableBytesView)
            guard response.status == .ok else { return .failure(Self.promptError(status: Int(response.status.code), body: data)) }
            return .success(data)
        } catch {
            return .failure(RuntimeError(code: "runtime_unavailable", message: "ComfyUI request failed: \(error)", retryable: true))
        }
    }
}

/// What ComfyUI's websocket said about one prompt: its progress, and whether it has ended.
final class PromptWatch: Sendable {
    private struct State {
        var promptID: String?
        var progress = 0.0
        /// When each prompt's end message arrived (it may come before ``follow(_:)`` names the prompt).
        var endedPrompts: [String: Int64] = [:]
        /// When each prompt's `execution_start` arrived.
        var startedPrompts: [String: Int64] = [:]
    }
    private let state = Mutex(State())
    /// Signalled when the websocket is open (or could not be opened).
    let connected = Wakeup()
    /// Signalled when the followed prompt's end message arrives.
    let ended = Wakeup()

    var progress: Double { state.withLock { $0.progress } }
    /// The prompt followed, once ComfyUI named it.
    var followed: String? { state.withLock { $0.promptID } }
    var hasEnded: Bool { endedAt != nil }
    /// When the followed prompt's end message arrived (epoch ms).
    var endedAt: Int64? { state.withLock { state in state.promptID.flatMap { state.endedPrompts[$0] } } }
    /// When the followed prompt's `execution_start` arrived (epoch ms).
    var startedAt: Int64? { state.withLock { state in state.promptID.flatMap { state.startedPrompts[$0] } } }

    /// From now on the messages of `promptID` count.
    func follow(_ promptID: String) {
        let done = state.withLock { state in
            state.promptID = promptID
            return state.endedPrompts[promptID] != nil
        }
        if done { ended.signal() }
    }

    /// One websocket message: `progress`, or one of the messages that end a prompt.
    func observe(_ event: JSONValue) {
        guard let type = event["type"]?.stringValue, let id = event["data"]?["prompt_id"]?.stringValue else { return }
        let isEnd: Bool
        let now = EpochClock.nowMillis()
        switch type {
        case "execution_start":
            state.withLock { state in if state.startedPrompts[id] == nil { state.startedPrompts[id] = now } }
            return
        case "executing": isEnd = event["data"]?["node"] == .null
        case "execution_success", "execution_error", "execution_interrupted": isEnd = true
        case "progress":
            if let value = event["data"]?["value"]?.numberValue, let maximum = event["data"]?["max"]?.numberValue, maximum > 0 {
                state.withLock { state in if state.promptID == id { state.progress = min(1, max(0, value / maximum)) } }
            }
            return
        default: return
        }
        guard isEnd else { return }
        let followed = state.withLock { state in
            if state.endedPrompts[id] == nil { state.endedPrompts[id] = now }
            return state.promptID == id
        }
        if followed { ended.signal() }
    }
}

/// A one-shot-at-a-time wake-up: ``wait(timeout:)`` returns when ``signal()`` was called since
/// the last wait (or is called during it), or when the timeout passes, or when the task is
/// cancelled.
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            // The timer (ended early by cancellation) wakes the waiter if nothing else does.
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.signal()
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.pending { return true }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
            group.cancelAll()
            await group.waitForAll()
            state.withLock { $0.pending = false }  // the wake-up is spent, the timer's included
        }
    }
}
