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
/// Bounded so that names that never resolve cost their owner, not everyone:
/// - a caller gets an answer or `timedOut` within `timeout`, whatever the lookup does (a stuck
///   lookup finishes on its own thread later);
/// - concurrent lookups of one name share one lookup;
/// - at most `maxPerZone` lookups run or wait per zone (the name's registrable part, roughly: the
///   last two labels, three under `co.uk`-style suffixes), so one owner's dead domain cannot
///   occupy the pool — past that, names in that zone are `busy` at once;
/// - at most `maxWaiting` lookups exist in all; past that a caller is `busy` at once;
/// - a queued lookup whose callers have all given up is dropped instead of run.
///
/// Numeric hosts are answered without a lookup.
public final class SystemNameResolver: NameResolver {
    /// The process-wide resolver: 16 threads, 2 s, 4 per zone, 64 in all.
    public static let shared = SystemNameResolver(threads: 16, timeout: .seconds(2), maxWaiting: 64, maxPerZone: 4)

    private final class Lookup: Sendable {
        /// The addresses; nil when the lookup was dropped unrun (everyone had given up).
        let result = Once<[String]?>()
    }
    private struct Entry {
        let lookup: Lookup
        let zone: String
        /// Callers still waiting for it.
        var pending: Int
    }
    private struct State {
        var entries: [String: Entry] = [:]
        var perZone: [String: Int] = [:]
        var total = 0
        /// The pool's threads start with the first lookup: a process that never resolves a
        /// name (the Lambda function, mostly) does not carry them.
        var poolStarted = false
    }
    private enum Admission {
        case join(Lookup)
        case start(Lookup)
        case busy
    }

    private let pool: NIOThreadPool
    public let timeout: Duration
    public let maxWaiting: Int
    public let maxPerZone: Int
    private let state = Mutex(State())
    private let lookup: @Sendable (String) -> [String]

    /// `lookup` is the blocking resolution (getaddrinfo; tests give a slow one).
    public init(
        threads: Int, timeout: Duration, maxWaiting: Int, maxPerZone: Int = .max,
        lookup: @escaping @Sendable (String) -> [String] = SystemNameResolver.lookup
    ) {
        pool = NIOThreadPool(numberOfThreads: threads)
        self.timeout = timeout
        self.maxWaiting = maxWaiting
        self.maxPerZone = maxPerZone
        self.lookup = lookup
    }

    public func addresses(of host: String) async throws(ResolutionError) -> [String] {
        let bare = (host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host).lowercased()
        if IPAddress(bare) != nil { return [bare] }
        let zone = Self.zone(of: bare)
        let admission = state.withLock { state -> Admission in
            if let entry = state.entries[bare] {
                state.entries[bare]?.pending += 1
                return .join(entry.lookup)
            }
            guard state.total < maxWaiting, state.perZone[zone, default: 0] < maxPerZone else { return .busy }
            if !state.poolStarted {
                state.poolStarted = true
                pool.start()
            }
            let lookup = Lookup()
            state.entries[bare] = Entry(lookup: lookup, zone: zone, pending: 1)
            state.perZone[zone, default: 0] += 1
            state.total += 1
            return .start(lookup)
        }
        let shared: Lookup
        switch admission {
        case .busy: throw ResolutionError(.busy, host: host)
        case .join(let lookup): shared = lookup
        case .start(let lookup):
            shared = lookup
            pool.submit { [self] poolState in
                // Dropped when every caller has given up before a thread was free.
                let wanted = state.withLock { ($0.entries[bare]?.pending ?? 0) > 0 }
                let found: [String]? = wanted && poolState == .active ? self.lookup(bare) : nil
                state.withLock { state in
                    state.entries.removeValue(forKey: bare)
                    state.perZone[zone, default: 1] -= 1
                    if state.perZone[zone] == 0 { state.perZone.removeValue(forKey: zone) }
                    state.total -= 1
                }
                lookup.result.resolve(found)
            }
        }
        let mine = Once<Result<[String], ResolutionError>>()
        let timeout = self.timeout
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled, mine.resolve(.failure(ResolutionError(.timedOut, host: host))) else { return }
            self.state.withLock { state in
                if state.entries[bare]?.lookup === shared { state.entries[bare]?.pending -= 1 }
            }
        }
        shared.result.onResolve { found in
            switch found {
            // Joined a lookup just as it was dropped: as if this caller's own had timed out.
            case nil: mine.resolve(.failure(ResolutionError(.timedOut, host: host)))
            case let found? where found.isEmpty: mine.resolve(.failure(ResolutionError(.notFound, host: host)))
            case let found?: mine.resolve(.success(found))
            }
        }
        let result: Result<[String], ResolutionError> = await withCheckedContinuation { continuation in
            mine.onResolve { continuation.resume(returning: $0) }
        }
        timer.cancel()
        return try result.get()
    }

    /// The part of a name one owner controls, approximately (no public-suffix list here): the
    /// last two labels, or three when the last two look like a country's second level
    /// (`co.uk`, `com.au`: a two-letter top level under a label of at most three letters).
    static func zone(of name: String) -> String {
        let labels = name.split(separator: ".").map(String.init)
        guard labels.count > 2 else { return name }
        let top = labels[labels.count - 1], second = labels[labels.count - 2]
        let keep = top.count == 2 && second.count <= 3 ? 3 : 2
        return labels.suffix(keep).joined(separator: ".")
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

/// A value delivered once, to every waiter, by whichever of several racers comes first.
final class Once<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiters: [@Sendable (Value) -> Void] = []
    }
    private let state = Mutex(State())

    /// Calls `waiter` with the value, now if it is there, else when it comes.
    func onResolve(_ waiter: @escaping @Sendable (Value) -> Void) {
        let ready: Value? = state.withLock { state in
            if let value = state.value { return value }
            state.waiters.append(waiter)
            return nil
        }
        if let ready { waiter(ready) }
    }

    /// Sets the value unless one is set; true when this call set it.
    @discardableResult
    func resolve(_ value: Value) -> Bool {
        let waiters: [@Sendable (Value) -> Void]? = state.withLock { state in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiters = [] }
            return state.waiters
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter(value) }
        return true
    }
}
