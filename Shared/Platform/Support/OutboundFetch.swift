import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Which URLs a service may fetch or call on a client's behalf (init images named by URL,
/// webhooks). A client-supplied URL is refused when its host is, or resolves to, an address that
/// is not globally reachable by the IANA special-purpose registries (``SpecialPurposeAddresses``:
/// loopback, private, link-local such as the instance metadata service, shared, documentation,
/// benchmarking, discard, multicast, …, with IPv4 carried in IPv6 judged as IPv4), unless
/// `allowPrivate` is set (tests and local stacks). Every redirect hop is checked again.
///
/// Names are resolved by a ``NameResolver`` that is asynchronous and bounded, and the connection
/// is made to the address that was checked (``OutboundHTTP``), so a DNS answer that changes in
/// between (rebinding) cannot redirect it; https keeps the name for SNI and certificate checks,
/// and `Host` is the name for both schemes.
public struct OutboundURLPolicy: Sendable {
    public var allowPrivate: Bool
    public var resolver: any NameResolver

    public init(allowPrivate: Bool = false, resolver: any NameResolver = SystemNameResolver.shared) {
        self.allowPrivate = allowPrivate
        self.resolver = resolver
    }

    /// What the policy says about one URL, resolved now.
    public enum Verdict: Sendable, Equatable {
        /// Allowed; `address` is the checked address to connect to (nil when private addresses
        /// are allowed and the client may resolve the name itself).
        case allowed(address: String?)
        case refused(String)
        /// The name did not resolve (or not in time): nothing was checked.
        case unresolved(ResolutionError)
    }

    /// Why `url`'s form alone refuses it (scheme, host), or nil.
    func formRefusal(_ url: URL) -> String? {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            return "only http and https URLs are allowed"
        }
        guard let host = url.host, !host.isEmpty else { return "the URL has no host" }
        return nil
    }

    /// Resolves `url`'s host and checks every address it has.
    public func vet(_ url: URL) async -> Verdict {
        if let refusal = formRefusal(url) { return .refused(refusal) }
        if allowPrivate { return .allowed(address: nil) }
        let host = url.host ?? ""
        let addresses: [String]
        do { addresses = try await resolver.addresses(of: host) } catch { return .unresolved(error) }
        for address in addresses {
            if let reason = Self.refusal(forAddress: address) { return .refused("\(host) resolves to \(reason)") }
        }
        guard let first = addresses.first else { return .unresolved(ResolutionError(.notFound, host: host)) }
        return .allowed(address: first)
    }

    /// The check made when a client names a URL (a webhook at submission): a URL that is not
    /// http(s), or whose host is or resolves to a non-public address, is refused. A name that does
    /// not resolve now, or not within the resolver's bound, passes: every delivery checks again.
    public func submissionRefusal(for url: URL) async -> String? {
        if case .refused(let reason) = await vet(url) { return reason }
        return nil
    }

    /// Why a numeric address may not be a destination, or nil when it may.
    public static func refusal(forAddress text: String) -> String? {
        guard let address = IPAddress(text) else { return "\(text), which is not an address" }
        return SpecialPurposeAddresses.refusal(for: address)
    }

    /// Whether a numeric address (IPv4 dotted or IPv6) is globally reachable.
    public static func isPublicAddress(_ address: String) -> Bool { refusal(forAddress: address) == nil }
}

/// Requests to client-named hosts, connected to the address the policy checked.
public enum OutboundHTTP {
    /// Executes `request` to `url`; with `address`, the connection goes there (AsyncHTTPClient's
    /// DNS override on a short-lived client: the URL, `Host` and TLS SNI keep the name, and the
    /// certificate is checked against it) instead of resolving the name again.
    public static func execute<Result: Sendable>(
        _ request: HTTPClientRequest, url: URL, address: String?, timeout: TimeAmount, shared: HTTPClient = .outbound,
        _ read: (HTTPClientResponse) async throws -> Result
    ) async throws -> Result {
        guard let address, let host = url.host, IPAddress(host) == nil else {
            return try await read(try await shared.execute(request, timeout: timeout))
        }
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        configuration.dnsOverride = [host: address]
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        do {
            let result = try await read(try await client.execute(request, timeout: timeout))
            try? await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// A failed fetch of a client-named URL.
public struct FetchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `url_refused`, `fetch_failed`, `fetch_status`, `too_large`.
    public var code: String
    public var message: String
    /// Whether trying again later may succeed (network errors, 5xx, 429).
    public var retryable: Bool
    public var description: String { "\(code): \(message)" }

    public init(code: String, message: String, retryable: Bool) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }
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

    private enum Step: Sendable {
        case body(Data, String?)
        /// The body went to a sink: its length.
        case streamed(Int64)
        case redirect(String)
    }

    /// One response: a redirect to follow, or the body within the size cap (collected, or
    /// handed to `sink` a piece at a time).
    private func read(
        _ response: HTTPClientResponse, from parsed: URL, sink: (@Sendable (ByteBuffer) throws -> Void)?
    ) async throws(FetchError) -> Step {
        let status = Int(response.status.code)
        if (300..<400).contains(status), let location = response.headers.first(name: "location") {
            guard let next = URL(string: location, relativeTo: parsed)?.absoluteString else {
                throw FetchError(code: "fetch_failed", message: "bad redirect to \(location)", retryable: false)
            }
            return .redirect(next)
        }
        guard (200..<300).contains(status) else {
            throw FetchError(code: "fetch_status", message: "\(parsed.host ?? "") answered \(status)", retryable: status >= 500 || status == 429)
        }
        if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > maxBytes {
            throw FetchError(code: "too_large", message: "the object is \(length) bytes, more than \(maxBytes)", retryable: false)
        }
        if let sink {
            var total: Int64 = 0
            do {
                for try await chunk in response.body {
                    total += Int64(chunk.readableBytes)
                    guard total <= Int64(maxBytes) else {
                        throw FetchError(code: "too_large", message: "the object is larger than \(maxBytes) bytes", retryable: false)
                    }
                    try sink(chunk)
                }
            } catch let error as FetchError {
                throw error
            } catch {
                throw FetchError(code: "fetch_failed", message: "reading \(parsed.host ?? "") failed: \(error)", retryable: true)
            }
            return .streamed(total)
        }
        do {
            let body = try await response.body.collect(upTo: maxBytes)
            return .body(Data(body.readableBytesView), response.headers.first(name: "content-type"))
        } catch is NIOTooManyBytesError {
            throw FetchError(code: "too_large", message: "the object is larger than \(maxBytes) bytes", retryable: false)
        } catch {
            throw FetchError(code: "fetch_failed", message: "reading \(parsed.host ?? "") failed: \(error)", retryable: true)
        }
    }

    /// The body of `url` and its content type.
    public func fetch(_ url: String) async throws(FetchError) -> (data: Data, contentType: String?) {
        guard case .body(let data, let type) = try await follow(url, sink: nil) else {
            throw FetchError(code: "fetch_failed", message: "no body", retryable: false)
        }
        return (data, type)
    }

    /// Streams the body of `url` into `sink` a piece at a time (never holding it whole), up to
    /// ``maxBytes``; returns its length. A failure part way leaves what `sink` got so far.
    public func stream(_ url: String, into sink: @escaping @Sendable (ByteBuffer) throws -> Void) async throws(FetchError) -> Int64 {
        guard case .streamed(let length) = try await follow(url, sink: sink) else {
            throw FetchError(code: "fetch_failed", message: "no body", retryable: false)
        }
        return length
    }

    /// Fetches `url`, following up to five redirects (each hop vetted by the policy).
    private func follow(_ url: String, sink: (@Sendable (ByteBuffer) throws -> Void)?) async throws(FetchError) -> Step {
        var current = url
        for _ in 0...5 {
            guard let parsed = URL(string: current) else {
                throw FetchError(code: "url_refused", message: "\(current) is not a URL", retryable: false)
            }
            let address: String?
            switch await policy.vet(parsed) {
            case .refused(let reason): throw FetchError(code: "url_refused", message: reason, retryable: false)
            case .unresolved(let error): throw FetchError(code: "fetch_failed", message: "\(error)", retryable: error.kind != .notFound)
            case .allowed(let checked): address = checked
            }
            var request = HTTPClientRequest(url: current)
            request.headers.add(name: "User-Agent", value: "sdq")
            let step: Step
            do {
                step = try await OutboundHTTP.execute(
                    request, url: parsed, address: address, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000),
                    shared: http
                ) { response in try await read(response, from: parsed, sink: sink) }
            } catch let error as FetchError {
                throw error
            } catch {
                throw FetchError(code: "fetch_failed", message: "fetching \(parsed.host ?? current) failed: \(error)", retryable: true)
            }
            guard case .redirect(let next) = step else { return step }
            current = next
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
