import ApiLambda
import AsyncHTTPClient
import Foundation
import NIOCore
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import Testing

/// The same handler behind the live HTTP server on a loopback port.
@Suite struct APIHTTPServerTests {
    @Test func servesTheHandlerOverHTTP() async throws {
        let fixture = try await EmbeddedFixture.make()
        let handler = APIHandler(context: fixture.context, logger: testLogger())
        let port = PortBox()
        let server = APIHTTPServer(handler: handler, port: 0, logger: testLogger()) { await port.set($0) }
        let group = ServiceGroup(configuration: .init(services: [.init(service: server)], logger: testLogger()))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let bound = await port.wait()
            let base = "http://127.0.0.1:\(bound)"

            var bad = HTTPClientRequest(url: "\(base)/v1/tasks")
            bad.method = .POST
            bad.body = .bytes(ByteBuffer(string: "{not json"))
            let badResponse = try await HTTPClient.shared.execute(bad, timeout: .seconds(10))
            #expect(badResponse.status.code == 400)
            #expect(badResponse.headers["content-type"].first == "application/json")
            _ = try await badResponse.body.collect(upTo: 1 << 20)

            var big = HTTPClientRequest(url: "\(base)/v1/tasks")
            big.method = .POST
            big.body = .bytes(ByteBuffer(string: "{\"prompt\": \"" + String(repeating: "x", count: 2 << 20) + "\"}"))
            let bigResponse = try await HTTPClient.shared.execute(big, timeout: .seconds(10))
            #expect(bigResponse.status.code == 413)
            _ = try await bigResponse.body.collect(upTo: 1 << 20)

            var good = HTTPClientRequest(url: "\(base)/v1/tasks")
            good.method = .POST
            good.body = .bytes(ByteBuffer(string: #"{"prompt": "over http"}"#))
            let goodResponse = try await HTTPClient.shared.execute(good, timeout: .seconds(10))
            #expect(goodResponse.status.code == 202)
            #expect(goodResponse.headers["location"].first?.hasPrefix("/v1/tasks/") == true)
            _ = try await goodResponse.body.collect(upTo: 1 << 20)
            #expect(try await fixture.queue(fixture.context.names.dispatchQueue).depth().visible == 1)

            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

