import Foundation
import HTTPTypes
import ApiLambda
import Hummingbird
import Logging
import NIOCore
import SDQPlatform
import ServiceLifecycle

/// A request context that knows the connection's addresses (for trusted proxies and links).
public struct PeerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client (or proxy) end of the connection.
    public let peer: SocketAddress?
    /// This server's end: the address the client reached.
    public let local: SocketAddress?
    /// The connection (a streamed response watches it for the client hanging up).
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress
        local = source.channel.localAddress
        channel = source.channel
    }
}

/// Serves ``APIHandler`` over plain HTTP (`api-lambda` outside Lambda, `sdq up`, `sdq generate`).
/// The server only translates; every decision is the handler's.
public struct APIHTTPServer: Service {
    public let handler: APIHandler
    public var host: String
    public var port: Int
    public var logger: Logger
    /// Called with the bound port once the server listens (useful with port 0).
    public var onListening: @Sendable (Int) async -> Void

    public init(
        handler: APIHandler, host: String = "127.0.0.1", port: Int, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.handler = handler
        self.host = host
        self.port = port
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let handler = self.handler
        let limit = handler.context.pools.limits.maxBodyBytes
        let responder = CallbackResponder { (request: Request, context: PeerRequestContext) -> Response in
            let (path, query) = APIRequest.splitTarget(request.uri.description)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            // HTTP/1 `Host` arrives as the request's authority, not as a header field.
            if let authority = request.head.authority { headers["host"] = authority }
            var head = APIRequest(method: request.method.rawValue, path: path, query: query, headers: headers)
            head.peerAddress = context.peer?.ipAddress
            head.localBaseURL = context.local.flatMap(Self.baseURL(of:))
            // Refusals that need no body are answered before any of it is read; Hummingbird then
            // discards the rest as it arrives (so the answer reaches the client, rather than a
            // reset), holding none of it.
            await handler.refreshKeys()
            if let refusal = handler.refusalBeforeBody(head) {
                if refusal.status == 401 { await handler.auditRefusedKey(head) }
                return Self.response(refusal)
            }
            if request.method == .put, path.hasPrefix("/v1/objects/uploads/") {
                return Self.response(await Self.streamUpload(request, head: head, handler: handler))
            }
            var request = request
            var body = Data()
            do {
                body = Data((try await request.collectBody(upTo: limit)).readableBytesView)
            } catch {
                head.bodyTooLarge = true
            }
            head.body = body
            let response = await handler.handle(head)
            guard response.stream != nil else { return Self.response(response) }
            return Self.response(response, hangUp: await HangUpWatcher.install(on: context.channel))
        }
        let onListening = self.onListening
        // A connection idle for a minute is closed (a client that opens connections and sends
        // nothing, or drips a body, holds them no longer).
        let app = Application(
            responder: responder, server: .http1(configuration: .init(idleTimeout: .seconds(60))),
            configuration: .init(address: .hostname(host, port: port), serverName: "sdq"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        // Open event streams would hold a graceful shutdown until their tasks end: they end now,
        // each with a `reconnect` event, and the clients resume on another instance.
        try await withGracefulShutdownHandler {
            try await app.runService()
        } onGracefulShutdown: {
            handler.openStreams.closeAll()
        }
    }

    private static func response(_ response: APIResponse, hangUp: HangUpWatcher? = nil) -> Response {
        var fields = HTTPFields()
        for (name, value) in response.headers {
            if let fieldName = HTTPField.Name(name) { fields[fieldName] = value }
        }
        let body = response.stream.map { Self.streamed($0, hangUp: hangUp) } ?? ResponseBody(byteBuffer: ByteBuffer(data: response.body))
        return Response(status: HTTPResponse.Status(code: response.status), headers: fields, body: body)
    }

    /// A streamed body: the stream runs in a child task and hands each piece over; the pieces are
    /// written (and flushed) as they come. When the connection closes, the stream is cancelled at
    /// once, so a client that goes away holds nothing.
    private static func streamed(_ stream: ResponseStream, hangUp: HangUpWatcher?) -> ResponseBody {
        ResponseBody { writer in
            let (pieces, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
            hangUp?.hungUp.whenComplete { _ in continuation.finish(throwing: CancellationError()) }
            defer { hangUp?.remove() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await stream.produce { continuation.yield($0) }
                        continuation.finish()
                    } catch {
                        continuation.finish(throwing: error)
                    }
                }
                defer { group.cancelAll() }
                for try await piece in pieces { try await writer.write(ByteBuffer(data: piece)) }
            }
            try await writer.finish(nil)
        }
    }

    /// `http://address:port` of a local socket address (IPv6 in brackets).
    static func baseURL(of address: SocketAddress) -> String? {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        return ip.contains(":") ? "http://[\(ip)]:\(port)" : "http://\(ip):\(port)"
    }

    /// An upload PUT: the URL is checked from the head; then the body goes chunk by chunk to a
    /// staged file (never whole into memory), cut off past the URL's `max_bytes`.
    private static func streamUpload(_ request: Request, head: APIRequest, handler: APIHandler) async -> APIResponse {
        let grant: UploadGrant
        do { grant = try handler.grantUpload(path: head.path, query: head.query, headers: head.headers) } catch {
            return .error(error)
        }
        guard let staging = handler.uploadStagingDirectory else {
            return .error(APIError(status: 501, code: "uploads_unsupported", message: "this deployment cannot accept uploads"))
        }
        let file = staging.appendingPathComponent(UUID().uuidString)
        var size = 0
        do {
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
                return .error(.unavailable("cannot stage the upload"))
            }
            let output = try FileHandle(forWritingTo: file)
            defer { try? output.close() }
            for try await chunk in request.body {
                size += chunk.readableBytes
                if size > grant.maxBytes {
                    try? FileManager.default.removeItem(at: file)
                    return .error(APIError.uploadTooLarge(grant.maxBytes))
                }
                try output.write(contentsOf: chunk.readableBytesView)
            }
        } catch {
            try? FileManager.default.removeItem(at: file)
            return .error(APIError(status: 400, code: "upload_interrupted", message: "the upload did not arrive whole: \(error)"))
        }
        return await handler.completeUpload(grant, file: file, size: size)
    }
}

/// Tells a streamed response that its client hung up. The server lets clients half-close (its
/// channels allow remote half-closure), so a client that goes away is otherwise only noticed when a
/// write fails, at the next heartbeat; this handler, first in the connection's pipeline while the
/// stream lasts, sees the end of the client's input (or of the connection) at once.
final class HangUpWatcher: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny
    /// Completes when the client's side ends.
    let hungUp: EventLoopFuture<Void>
    private let promise: EventLoopPromise<Void>
    private let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
        promise = channel.eventLoop.makePromise()
        hungUp = promise.futureResult
    }

    /// A watcher installed on `channel`; nil when it cannot be (the connection is gone already,
    /// which the response's first write then finds).
    static func install(on channel: any Channel) async -> HangUpWatcher? {
        let watcher = HangUpWatcher(channel: channel)
        do {
            try await channel.pipeline.addHandler(watcher, position: .first).get()
        } catch {
            return nil
        }
        return watcher
    }

    /// Takes the watcher out of the pipeline (the stream ended); the future completes.
    func remove() {
        channel.pipeline.removeHandler(self, promise: nil)
        promise.succeed()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.succeed()
        context.fireChannelInactive()
    }
}
