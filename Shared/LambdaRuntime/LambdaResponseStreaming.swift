import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A function body whose response may be streamed (Lambda response streaming: a Function URL
/// with `InvokeMode: RESPONSE_STREAM`, an API Gateway REST integration in `STREAM` mode).
public protocol StreamingLambdaHandler: LambdaHandler {
    /// Handles an invocation whose response is streamed: `contentType` is what the response
    /// declares (`application/vnd.awslambda.http-integration-response` for HTTP front doors), and
    /// `write` sends each piece of the body as it is ready. An error thrown after the first piece
    /// reaches the caller as the stream's error (trailers).
    func stream(_ event: Data, context: LambdaContext, respond: (_ contentType: String, _ body: StreamedBody) async throws -> Void)
        async throws
}

/// The body of a streamed response: called once with the function that sends a piece.
public typealias StreamedBody = (_ write: (Data) async throws -> Void) async throws -> Void

/// How the run loop answers invocations.
public enum LambdaResponseMode: String, Sendable {
    /// One `POST …/response` with the whole body (the default).
    case buffered
    /// `Lambda-Runtime-Function-Response-Mode: streaming`: the body is posted with chunked
    /// transfer encoding as it is written; an error mid-stream goes in the trailers.
    case streaming
}

extension LambdaRuntimeClient {
    /// Posts a streamed response. This default (for clients that cannot stream) collects the
    /// body and posts it whole.
    public func respondStreaming(requestID: String, contentType: String, body: StreamedBody) async throws(LambdaRuntimeError) {
        let buffer = LockedData()
        do {
            try await body { buffer.append($0) }
        } catch {
            try await fail(requestID: requestID, error: LambdaErrorReport(errorType: "Runtime.StreamError", errorMessage: "\(error)"))
            return
        }
        try await respond(requestID: requestID, body: buffer.data)
    }
}

/// Bytes appended from one task at a time.
final class LockedData: Sendable {
    private let storage = Mutex(Data())
    func append(_ data: Data) { storage.withLock { $0.append(data) } }
    var data: Data { storage.withLock { $0 } }
}

/// Posts one streamed response to the Runtime API over its own connection, as AWS documents the
/// contract: `POST /2018-06-01/runtime/invocation/{id}/response` with
/// `Lambda-Runtime-Function-Response-Mode: streaming` and `Transfer-Encoding: chunked`, each piece
/// of the body a chunk as soon as it is written; declared trailers
/// `Lambda-Runtime-Function-Error-Type` and `Lambda-Runtime-Function-Error-Body` (base64 of the
/// error JSON) carry an error raised after the body began. Hand-written on NIO because the
/// runtime's HTTP client cannot send trailers.
struct StreamingResponsePoster {
    let host: String
    let port: Int

    init(endpoint: String) throws(LambdaRuntimeError) {
        let parts = endpoint.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw LambdaRuntimeError("AWS_LAMBDA_RUNTIME_API is not host:port: \(endpoint)") }
        host = String(parts[0])
        self.port = port
    }

    func post(requestID: String, contentType: String, body: StreamedBody) async throws(LambdaRuntimeError) {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
            let status = try await channel.executeThenClose { inbound, outbound in
                var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/2018-06-01/runtime/invocation/\(requestID)/response")
                head.headers.add(name: "Host", value: "\(host):\(port)")
                head.headers.add(name: "Lambda-Runtime-Function-Response-Mode", value: "streaming")
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
                head.headers.add(name: "Content-Type", value: contentType)
                head.headers.add(name: "Trailer", value: "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
                try await outbound.write(.head(head))
                var trailers: HTTPHeaders?
                do {
                    try await body { data in
                        guard !data.isEmpty else { return }
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: data))))
                    }
                } catch {
                    let report = LambdaErrorReport(errorType: "Runtime.StreamError", errorMessage: "\(error)")
                    trailers = [
                        "Lambda-Runtime-Function-Error-Type": report.errorType,
                        "Lambda-Runtime-Function-Error-Body": report.json.base64EncodedString(),
                    ]
                }
                try await outbound.write(.end(trailers))
                var status: UInt = 0
                for try await part in inbound {
                    if case .head(let response) = part { status = response.status.code }
                    if case .end = part { break }
                }
                return status
            }
            guard status == 202 else { throw LambdaRuntimeError("streamed response answered \(status)") }
        } catch let error as LambdaRuntimeError {
            throw error
        } catch {
            throw LambdaRuntimeError("streaming the response of \(requestID) failed: \(error)")
        }
    }
}
