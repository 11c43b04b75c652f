import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The Runtime API's side of a streamed response, written from AWS's documentation of the
/// contract ("Response streaming for custom runtimes"): it accepts `POST
/// /2018-06-01/runtime/invocation/{id}/response`, and records the request head, each piece of the
/// body with when it arrived, and the trailers, decoding the chunked encoding with NIO's HTTP
/// parser. It answers 202 once the request ended.
actor StreamedResponseRecord {
    struct Piece: Sendable {
        var data: Data
        var at: ContinuousClock.Instant
    }

    private(set) var head: HTTPRequestHead?
    private(set) var pieces: [Piece] = []
    private(set) var trailers: HTTPHeaders?
    private(set) var ended = false

    func begin(_ head: HTTPRequestHead) { self.head = head }
    func add(_ data: Data) { pieces.append(Piece(data: data, at: .now)) }
    func end(_ trailers: HTTPHeaders?) {
        self.trailers = trailers
        ended = true
    }

    var body: Data { pieces.reduce(into: Data()) { $0.append($1.data) } }

    /// The body's text so far.
    var text: String { String(decoding: body, as: UTF8.self) }
}

enum StreamingRuntimeAPIPeer {
    /// Runs the peer on a loopback port while `body` runs with its `host:port` and its record.
    static func run<T: Sendable>(_ body: @Sendable (String, StreamedResponseRecord) async throws -> T) async throws -> T {
        let record = StreamedResponseRecord()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        let port = server.channel.localAddress?.port ?? 0
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        try? await connection.executeThenClose { inbound, outbound in
                            for try await part in inbound {
                                switch part {
                                case .head(let head): await record.begin(head)
                                case .body(let buffer): await record.add(Data(buffer.readableBytesView))
                                case .end(let trailers):
                                    await record.end(trailers)
                                    var head = HTTPResponseHead(version: .http1_1, status: .accepted)
                                    head.headers.add(name: "Content-Length", value: "0")
                                    try await outbound.write(.head(head))
                                    try await outbound.write(.end(nil))
                                    return
                                }
                            }
                        }
                    }
                }
            }
            defer { group.cancelAll() }
            do {
                let result = try await body("127.0.0.1:\(port)", record)
                try? await server.channel.close()
                return result
            } catch {
                try? await server.channel.close()
                throw error
            }
        }
    }
}
