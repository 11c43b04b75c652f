import ApiLambda
import AsyncHTTPClient
import Foundation
import NIOCore
import SDQPlatform
import SDQTestSupport
import ServiceLifecycle
import Testing
import ApiHTTP

/// The same handler behind the live HTTP server on a loopback port.
@Suite struct APIHTTPServerTests {
    /// Runs `handler` behind the HTTP server on a free loopback port while `body` runs.
    static func withServer(_ handler: APIHandler, _ body: @Sendable (_ port: Int) async throws -> Void) async throws {
        let port = PortBox()
        let server = APIHTTPServer(handler: handler, port: 0, logger: testLogger()) { await port.set($0) }
        let group = ServiceGroup(configuration: .serverUnderTest([server], logger: testLogger()))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body(await port.wait())
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func servesTheHandlerOverHTTP() async throws {
        let fixture = try await EmbeddedFixture.make()
        let handler = APIHandler(context: fixture.context, logger: testLogger())
        try await Self.withServer(handler) { bound in
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
        }
    }

    /// Sends `head` (no body) on a raw connection and returns the first bytes answered within
    /// 5 s: a refusal that comes back while the announced body is still unsent was decided from
    /// the head alone.
    static func answerToHead(_ head: String, port: Int) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return "" }
        _ = head.utf8CString.withUnsafeBufferPointer { send(fd, $0.baseAddress, $0.count - 1, 0) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
    }

    @Test func refusalsNeedNoBodyAndUploadsStreamToDisk() async throws {
        let fixture = try await EmbeddedFixture.make()
        let handler = APIHandler(
            context: fixture.context, logger: testLogger(), apiKeys: ["k"], signer: ObjectURLSigner(secret: Data(repeating: 3, count: 32)))
        try await Self.withServer(handler) { bound in
            let base = "http://127.0.0.1:\(bound)"
            // 16 MiB announced, none sent: answered anyway.
            let unsigned = Self.answerToHead(
                "PUT /v1/objects/uploads/x/y?expires=9999999999&max_bytes=16777216&signature=bad HTTP/1.1\r\nHost: a\r\n"
                    + "Content-Type: image/png\r\nContent-Length: 16777216\r\n\r\n", port: bound)
            #expect(unsigned.hasPrefix("HTTP/1.1 403"), "\(unsigned)")
            let keyless = Self.answerToHead(
                "POST /v1/tasks HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n\r\n", port: bound)
            #expect(keyless.hasPrefix("HTTP/1.1 401"), "\(keyless)")

            // A signed upload of 3 MiB goes through the streaming path whole, once.
            var create = HTTPClientRequest(url: "\(base)/v1/uploads")
            create.method = .POST
            create.headers.add(name: "Authorization", value: "Bearer k")
            create.body = .bytes(ByteBuffer(string: #"{"content_type": "image/png"}"#))
            let created = try await HTTPClient.shared.execute(create, timeout: .seconds(10))
            let answer = try JSONValue.parse(Data((try await created.body.collect(upTo: 1 << 20)).readableBytesView))
            let url = try #require(answer["url"]?.stringValue)
            let key = try #require(answer["key"]?.stringValue)
            let payload = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            func put(_ type: String) async throws -> UInt {
                var request = HTTPClientRequest(url: url)
                request.method = .PUT
                request.headers.add(name: "Content-Type", value: type)
                request.body = .bytes(ByteBuffer(data: payload))
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                _ = try await response.body.collect(upTo: 1 << 20)
                return response.status.code
            }
            #expect(try await put("text/html") == 403)
            #expect(try await put("image/png") == 200)
            #expect(try await put("image/png") == 409)
            let stored = try await fixture.transport.objects.get(key: key)
            #expect(stored?.data == payload && stored?.contentType == "image/png")
            // Nothing is left in the staging folder.
            let staged = (try? FileManager.default.contentsOfDirectory(atPath: fixture.transport.stagingFolderURL.path)) ?? []
            #expect(staged.isEmpty)
        }
    }
}
