import AsyncHTTPClient
import NIOCore

extension HTTPClient {
    /// The process-wide client the AWS clients use. Unlike `HTTPClient.shared` (8 connections per
    /// host) it allows 64, because every SQS consumer holds one connection for its long poll and
    /// a busy process has many consumers against the same endpoint. Like `.shared`, it lives as
    /// long as the process and is never shut down.
    public static let aws: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()
}
