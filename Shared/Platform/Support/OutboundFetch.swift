import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Which URLs a service may fetch or call on a client's behalf (init images named by URL,
/// webhooks). A client-supplied URL is refused when its host resolves to an address that is not
/// publicly routable (loopback, RFC 1918, link-local such as the instance metadata service,
/// carrier-grade NAT, unique-local IPv6, multicast, unspecified), unless `allowPrivate` is set
/// (tests and local stacks). Every redirect hop is checked again.
///
/// The check resolves the name before the connection resolves it again; a DNS answer that changes
/// in between (rebinding) is not covered. Deployments that need that guarantee also block the
/// metadata and private ranges at the network layer (security group, NetworkPolicy).
public struct OutboundURLPolicy: Sendable {
    public var allowPrivate: Bool

    public init(allowPrivate: Bool = false) { self.allowPrivate = allowPrivate }

    /// Why `url` may not be fetched, or nil when it may.
    public func refusal(for url: URL) -> String? {
        if case .refused(let reason) = vet(url) { return reason }
        return nil
    }

    /// What the policy says about one URL, resolved now.
    public enum Verdict: Sendable, Equatable {
        /// Allowed; `address` is a checked public address of the host (nil when private
        /// addresses are allowed), which a caller may connect to instead of resolving again.
        case allowed(address: String?)
        case refused(String)
    }

    /// Resolves `url`'s host and checks every address it has.
    public func vet(_ url: URL) -> Verdict {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            return .refused("only http and https URLs are allowed")
        }
        guard let host = url.host, !host.isEmpty else { return .refused("the URL has no host") }
        if allowPrivate { return .allowed(address: nil) }
        let addresses = Self.resolve(host)
        guard let first = addresses.first else { return .refused("\(host) does not resolve") }
        if let blocked = addresses.first(where: { !Self.isPublicAddress($0) }) {
            return .refused("\(host) resolves to the non-public address \(blocked)")
        }
        return .allowed(address: first)
    }

    /// The check made when a client names a URL (a webhook at submission): a URL that is not
    /// http(s), or whose host is or resolves to a non-public address, is refused. A name that does
    /// not resolve now, or not within `timeout`, passes: every delivery checks again.
    public func submissionRefusal(for url: URL, timeout: Duration = .seconds(2)) async -> String? {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            return "only http and https URLs are allowed"
        }
        guard let host = url.host, !host.isEmpty else { return "the URL has no host" }
        if allowPrivate { return nil }
        let addresses: [String] = await withTaskGroup(of: [String]?.self) { group in
            group.addTask { try? await NIOThreadPool.singleton.runIfActive { Self.resolve(host) } }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? []
        }
        if let blocked = addresses.first(where: { !Self.isPublicAddress($0) }) {
            return "\(host) resolves to the non-public address \(blocked)"
        }
        return nil
    }

    /// Resolves `host` to its addresses as text (IPv4 dotted, IPv6 colon form).
    static func resolve(_ host: String) -> [String] {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(bare, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var result: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                result.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            cursor = entry.pointee.ai_next
        }
        return result
    }

    /// Whether a numeric address (IPv4 dotted or IPv6) is publicly routable.
    public static func isPublicAddress(_ address: String) -> Bool {
        if let v4 = ipv4Octets(address) { return isPublicIPv4(v4) }
        var v6 = in6_addr()
        let text = address.split(separator: "%").first.map(String.init) ?? address
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return isPublicIPv4(Array(bytes[12..<16]))  // IPv4-mapped
        }
        if bytes.allSatisfy({ $0 == 0 }) { return false }  // ::
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return false }  // ::1
        if bytes[0] & 0xfe == 0xfc { return false }  // fc00::/7 unique local
        if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { return false }  // fe80::/10 link-local
        if bytes[0] == 0xff { return false }  // multicast
        if bytes[0] == 0x00 && bytes[1] == 0x64 && bytes[2] == 0xff && bytes[3] == 0x9b {  // 64:ff9b::/96 NAT64
            return isPublicIPv4(Array(bytes[12..<16]))
        }
        return true
    }

    private static func ipv4Octets(_ address: String) -> [UInt8]? {
        let parts = address.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        let octets = parts.compactMap { UInt8($0) }
        return octets.count == 4 ? octets : nil
    }

    private static func isPublicIPv4(_ o: [UInt8]) -> Bool {
        switch (o[0], o[1]) {
        case (0, _), (10, _), (127, _): return false
        case (100, 64...127): return false  // carrier-grade NAT
        case (169, 254): return false  // link-local, instance metadata
        case (172, 16...31), (192, 168): return false
        case (192, 0) where o[2] == 0 || o[2] == 2: return false  // IETF protocol assignments, TEST-NET-1
        case (198, 18...19): return false  // benchmarking
        case (198, 51) where o[2] == 100, (203, 0) where o[2] == 113: return false  // TEST-NET-2/3
        case (224...255, _): return false  // multicast, reserved, broadcast
        default: return true
        }
    }
}

/// A failed fetch of a client-named URL.
public struct FetchError: Error, Sendable, CustomStringConvertible {
    /// `url_refused`, `fetch_failed`, `fetch_status`, `too_large`.
    public var code: String
    public var message: String
    /// Whether trying again later may succeed (network errors, 5xx, 429).
    public var retryable: Bool
    public var description: String { "\(code): \(message)" }
}

/// Downloads client-named URLs under an ``OutboundURLPolicy``, a size cap and a timeout,
/// following at most five redirects, each checked by the policy.
public struct URLFetcher: Sendable {
    public var policy: OutboundURLPolicy
    public var maxBytes: Int
    public var timeout: Duration
    let http: HTTPClient

    public init(policy: OutboundURLPolicy, maxBytes: Int, timeout: Duration = .seconds(30), http: HTTPClient = .outbound) {
        self.policy = policy
        self.maxBytes = maxBytes
        self.timeout = timeout
        self.http = http
    }

    /// The body of `url` and its content type.
    public func fetch(_ url: String) async throws(FetchError) -> (data: Data, contentType: String?) {
        var current = url
        for _ in 0...5 {
            guard let parsed = URL(string: current) else {
                throw FetchError(code: "url_refused", message: "\(current) is not a URL", retryable: false)
            }
            if let refusal = policy.refusal(for: parsed) {
                throw FetchError(code: "url_refused", message: refusal, retryable: false)
            }
            var request = HTTPClientRequest(url: current)
            request.headers.add(name: "User-Agent", value: "sdq")
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
            } catch {
                throw FetchError(code: "fetch_failed", message: "fetching \(parsed.host ?? current) failed: \(error)", retryable: true)
            }
            let status = Int(response.status.code)
            if (300..<400).contains(status), let location = response.headers.first(name: "location") {
                guard let next = URL(string: location, relativeTo: parsed)?.absoluteString else {
                    throw FetchError(code: "fetch_failed", message: "bad redirect to \(location)", retryable: false)
                }
                current = next
                continue
            }
            guard (200..<300).contains(status) else {
                throw FetchError(
                    code: "fetch_status", message: "\(parsed.host ?? current) answered \(status)",
                    retryable: status >= 500 || status == 429)
            }
            if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > maxBytes {
                throw FetchError(code: "too_large", message: "the object is \(length) bytes, more than \(maxBytes)", retryable: false)
            }
            do {
                let body = try await response.body.collect(upTo: maxBytes)
                return (Data(body.readableBytesView), response.headers.first(name: "content-type"))
            } catch is NIOTooManyBytesError {
                throw FetchError(code: "too_large", message: "the object is larger than \(maxBytes) bytes", retryable: false)
            } catch {
                throw FetchError(code: "fetch_failed", message: "reading \(parsed.host ?? current) failed: \(error)", retryable: true)
            }
        }
        throw FetchError(code: "fetch_failed", message: "more than five redirects", retryable: false)
    }
}

extension HTTPClient {
    /// The process-wide client for client-named URLs: redirects are not followed by the client
    /// (``URLFetcher`` follows them itself, checking each hop), and it never shuts down.
    public static let outbound: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()
}
