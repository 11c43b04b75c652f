import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SDQPlatform
import ServiceLifecycle

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
        let uploadLimit = handler.context.pools.limits.maxUploadBytes
        let responder = CallbackResponder { (request: Request, _: BasicRequestContext) -> Response in
            var request = request
            var tooLarge = false
            var body = Data()
            // Uploads (signed PUTs of init images) may be larger than API requests.
            let isUpload = request.method == .put && request.uri.path.hasPrefix("/v1/objects/uploads/")
            do {
                body = Data((try await request.collectBody(upTo: isUpload ? uploadLimit : limit)).readableBytesView)
            } catch {
                tooLarge = true
            }
            let (path, query) = APIRequest.splitTarget(request.uri.description)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            // HTTP/1 `Host` arrives as the request's authority, not as a header field.
            if let authority = request.head.authority { headers["host"] = authority }
            let response = await handler.handle(
                APIRequest(
                    method: request.method.rawValue, path: path, query: query, headers: headers, body: body,
                    bodyTooLarge: tooLarge))
            var fields = HTTPFields()
            for (name, value) in response.headers {
                if let fieldName = HTTPField.Name(name) { fields[fieldName] = value }
            }
            return Response(
                status: HTTPResponse.Status(code: response.status), headers: fields,
                body: ResponseBody(byteBuffer: ByteBuffer(data: response.body)))
        }
        let onListening = self.onListening
        let app = Application(
            responder: responder,
            configuration: .init(address: .hostname(host, port: port), serverName: "sdq"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await app.runService()
    }
}
