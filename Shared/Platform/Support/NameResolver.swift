import Foundation
import NIOPosix
import Synchronization

/// Resolves host names for client-named URLs (webhooks, init images by URL).
public protocol NameResolver: Sendable {
    /// The addresses of `host` (numeric text), or an error; never waits longer than its own bound.
    func addresses(of host: String) async throws(ResolutionError) -> [String]
}

/// A failed name lookup.
public struct ResolutionError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The name has no address.
        case notFound
        /// No answer within the resolver's bound.
        case timedOut
        /// Too many lookups are waiting already; try later.
        case busy
    }
    public let kind: Kind
    public let host: String
    public init(_ kind: Kind, host: String) {
        self.kind = kind
        self.host = host
    }
    public var description: String {
        switch kind {
        case .notFound: "\(host) does not resolve"
        case .timedOut: "\(host) did not resolve in time"
        case .busy: "too many name lookups are waiting; \(host) was not looked up"
        }
    }
}

/// The system resolver (`getaddrinfo`: `/etc/hosts`, `resolv.conf`, search domains) run on a
/// thread pool of its own, so a resolver that never answers ties up none of the threads that
/// storage (SQLite's pool) or the event loops need.
///
/// Bounded twice: a caller gets an answer or `timedOut` within `timeout`, whatever the lookup
/// does (the stuck lookup finishes on its own thread later); and at most `maxWaiting` lookups
/// exist at once — past that a caller is told `busy` at once instead of queueing behind stuck
/// ones. Numeric hosts are answered without a lookup.
public final class SystemNameResolver: NameResolver {
    /// The process-wide resolver: 4 threads, 2 s, 64 lookups.
    public static let shared = SystemNameResolver(threads: 4, timeout: .seconds(2), maxWaiting: 64)

    private let pool: NIOThreadPool
    public let timeout: Duration
    public let maxWaiting: Int
    private let waiting = Mutex(0)
    private let lookup: @Sendable (String) -> [String]

    /// `lookup` is the blocking resolution (getaddrinfo; tests give a slow one).
    public init(
        threads: Int, timeout: Duration, maxWaiting: Int, lookup: @escaping @Sendable (String) -> [String] = SystemNameResolver.lookup
    ) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        self.timeout = timeout
        self.maxWaiting = maxWaiting
        self.lookup = lookup
    }

    public func addresses(of host: String) async throws(ResolutionError) -> [String] {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if IPAddress(bare) != nil { return [bare] }
        let admitted = waiting.withLock { count -> Bool in
            guard count < maxWaiting else { return false }
            count += 1
            return true
        }
        guard admitted else { throw ResolutionError(.busy, host: host) }
        let outcome = Once<Result<[String], ResolutionError>>()
        let timeout = self.timeout
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { outcome.resolve(.failure(ResolutionError(.timedOut, host: host))) }
        }
        pool.submit { [self] state in
            let found = state == .active ? self.lookup(bare) : []
            self.waiting.withLock { $0 -= 1 }
            outcome.resolve(found.isEmpty ? .failure(ResolutionError(.notFound, host: host)) : .success(found))
        }
        let result: Result<[String], ResolutionError> = await withCheckedContinuation { continuation in
            outcome.onResolve { continuation.resume(returning: $0) }
        }
        timer.cancel()
        return try result.get()
    }

    /// `getaddrinfo` of `host` as numeric text (blocking; on the resolver's own threads only).
    public static func lookup(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var result: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !result.contains(text) { result.append(text) }
            }
            cursor = entry.pointee.ai_next
        }
        return result
    }
}

/// A value delivered once, to one waiter, by whichever of several racers comes first.
final class Once<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiter: (@Sendable (Value) -> Void)?
        var done = false
    }
    private let state = Mutex(State())

    func onResolve(_ waiter: @escaping @Sendable (Value) -> Void) {
        let ready: Value? = state.withLock { state in
            if let value = state.value, !state.done {
                state.done = true
                return value
            }
            state.waiter = waiter
            return nil
        }
        if let ready { waiter(ready) }
    }

    func resolve(_ value: Value) {
        let waiter: (@Sendable (Value) -> Void)? = state.withLock { state in
            guard state.value == nil else { return nil }
            state.value = value
            guard let waiter = state.waiter, !state.done else { return nil }
            state.done = true
            return waiter
        }
        waiter?(value)
    }
}
