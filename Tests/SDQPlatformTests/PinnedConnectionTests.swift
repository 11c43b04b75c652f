import AsyncHTTPClient
import Foundation
import SDQPlatform
import Synchronization
import Testing

/// What a listener received.
final class CaptureBox: Sendable {
    let bytes = Mutex<[UInt8]>([])
}

/// A one-connection TCP listener on 127.0.0.1 that records the first bytes a client sends and
/// answers `reply` (nil: it just closes).
final class CapturingListener: Sendable {
    let port: Int
    private let socketFD: Int32
    private let box = CaptureBox()

    init(reply: String?) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 4) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        socketFD = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let box = self.box
        Thread.detachNewThread {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(client, &buffer, buffer.count, 0)
            if count > 0 { box.bytes.withLock { $0 = Array(buffer[0..<count]) } }
            if let reply { _ = reply.utf8CString.withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count - 1, 0) } }
            shutdown(client, Int32(SHUT_RDWR))
            Glibc.close(client)
        }
    }

    var bytes: [UInt8] { box.bytes.withLock { $0 } }
    var text: String { String(decoding: bytes, as: UTF8.self) }

    deinit { Glibc.close(socketFD) }
}

/// The connection goes to the address the policy checked, not to a second resolution of the name.
@Suite struct PinnedConnectionTests {
    @Test func plainHTTPGoesToTheCheckedAddressWithTheNameAsHost() async throws {
        let listener = try CapturingListener(reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        // The name does not resolve anywhere: only a pinned connection can reach the listener.
        let url = URL(string: "http://rebind.invalid:\(listener.port)/hook")!
        let status = try await OutboundHTTP.execute(
            HTTPClientRequest(url: url.absoluteString), url: url, address: "127.0.0.1", timeout: .seconds(5)
        ) { response in Int(response.status.code) }
        #expect(status == 200)
        #expect(listener.text.lowercased().contains("host: rebind.invalid:\(listener.port)"), "\(listener.text)")
        #expect(listener.text.hasPrefix("GET /hook HTTP/1.1"))
    }

    @Test func httpsGoesToTheCheckedAddressAndKeepsTheNameForSNI() async throws {
        let listener = try CapturingListener(reply: nil)
        let url = URL(string: "https://rebind.invalid:\(listener.port)/hook")!
        await #expect(throws: (any Error).self) {
            _ = try await OutboundHTTP.execute(
                HTTPClientRequest(url: url.absoluteString), url: url, address: "127.0.0.1", timeout: .seconds(2)
            ) { response in Int(response.status.code) }
        }
        // A TLS ClientHello (record type 22) whose server_name extension names the host.
        let bytes = listener.bytes
        #expect(bytes.first == 22)
        #expect(String(decoding: bytes, as: UTF8.self).contains("rebind.invalid"))
    }

    /// A resolver whose second answer differs from its first (a rebinding name server).
    final class RebindingResolver: NameResolver {
        let calls = Mutex(0)
        func addresses(of host: String) async throws(ResolutionError) -> [String] {
            let call = calls.withLock { count -> Int in
                count += 1
                return count
            }
            return call == 1 ? ["8.8.8.8"] : ["127.0.0.1"]
        }
    }

    @Test func theCheckResolvesOnceAndNamesTheAddressToConnectTo() async {
        let resolver = RebindingResolver()
        let policy = OutboundURLPolicy(resolver: resolver)
        #expect(await policy.vet(URL(string: "https://rebind.example/x")!) == .allowed(address: "8.8.8.8"))
        #expect(resolver.calls.withLock { $0 } == 1)
        // Asked again, the rebound answer is judged, and refused.
        guard case .refused(let reason) = await policy.vet(URL(string: "https://rebind.example/x")!) else {
            Issue.record("the rebound address was allowed")
            return
        }
        #expect(reason.contains("127.0.0.1"))
    }

    @Test func aNameThatDoesNotResolveIsNotRefusedAtSubmissionButIsNotFetched() async throws {
        struct Silent: NameResolver {
            func addresses(of host: String) async throws(ResolutionError) -> [String] { throw ResolutionError(.timedOut, host: host) }
        }
        let policy = OutboundURLPolicy(resolver: Silent())
        #expect(await policy.submissionRefusal(for: URL(string: "http://never.example/h")!) == nil)
        let fetcher = URLFetcher(policy: policy, maxBytes: 1024)
        await #expect(throws: FetchError(code: "fetch_failed", message: "never.example did not resolve in time", retryable: true)) {
            _ = try await fetcher.fetch("http://never.example/h")
        }
    }
}
