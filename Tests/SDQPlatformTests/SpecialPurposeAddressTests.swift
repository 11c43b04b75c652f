import Foundation
import NIOPosix
import SDQPlatform
import SDQTestSupport
import Synchronization
import Testing

/// Every row of the IANA IPv4 and IPv6 Special-Purpose Address Registries (written out here from
/// the registries, independently of the table in the code), plus the IPv4-in-IPv6 forms.
@Suite struct SpecialPurposeAddressTests {
    /// (an address inside the row, whether it may be a destination)
    static let ipv4Rows: [(String, Bool)] = [
        ("0.1.2.3", false),  // 0.0.0.0/8 "This network"
        ("0.0.0.0", false),  // 0.0.0.0/32
        ("10.200.3.4", false),  // 10.0.0.0/8
        ("100.127.255.254", false),  // 100.64.0.0/10 shared
        ("127.8.8.8", false),  // 127.0.0.0/8
        ("169.254.169.254", false),  // 169.254.0.0/16 link local, instance metadata
        ("172.31.255.1", false),  // 172.16.0.0/12
        ("192.0.0.200", false),  // 192.0.0.0/24 IETF protocol assignments
        ("192.0.0.7", false),  // 192.0.0.0/29 service continuity
        ("192.0.0.8", false),  // dummy
        ("192.0.0.9", true),  // PCP anycast: globally reachable
        ("192.0.0.10", true),  // TURN anycast: globally reachable
        ("192.0.0.170", false), ("192.0.0.171", false),  // NAT64/DNS64 discovery
        ("192.0.2.77", false),  // TEST-NET-1
        ("192.31.196.1", true),  // AS112-v4
        ("192.52.193.1", true),  // AMT
        ("192.88.99.1", false),  // deprecated 6to4 relay anycast
        ("192.168.77.1", false),  // 192.168.0.0/16
        ("192.175.48.6", true),  // AS112 direct delegation
        ("198.19.0.1", false),  // 198.18.0.0/15 benchmarking
        ("198.51.100.1", false),  // TEST-NET-2
        ("203.0.113.9", false),  // TEST-NET-3
        ("240.0.0.1", false),  // reserved
        ("255.255.255.255", false),  // limited broadcast
        ("224.0.0.251", false),  // multicast (outside the registry)
        ("8.8.8.8", true), ("52.94.236.248", true), ("172.32.0.1", true), ("100.128.0.1", true), ("192.0.3.1", true),
    ]

    static let ipv6Rows: [(String, Bool)] = [
        ("::1", false), ("::", false),
        ("::ffff:10.0.0.1", false), ("::ffff:1.1.1.1", true),  // mapped: judged as IPv4
        ("64:ff9b::a9fe:a9fe", false), ("64:ff9b::808:808", true),  // NAT64: judged as IPv4
        ("64:ff9b:1::1", false),  // local-use translation
        ("100::1", false),  // discard-only
        ("100:0:0:1::1", false),  // dummy prefix
        ("2001:2:0:1::1", false),  // benchmarking
        ("2001:1::1", true), ("2001:1::2", true), ("2001:1::3", true),  // anycast: globally reachable
        ("2001:1::4", false),  // IETF protocol assignments
        ("2001:3::1", true),  // AMT
        ("2001:4:112::1", true),  // AS112-v6
        ("2001:10::1", false),  // deprecated ORCHID
        ("2001:20::1", true),  // ORCHIDv2
        ("2001:30::1", true),  // DETs
        ("2001:db8::1", false),  // documentation
        ("3fff::1", false),  // documentation (2024)
        ("5f00::1", false),  // SRv6 SIDs
        ("2620:4f:8000::1", true),  // AS112 direct delegation
        ("fc00::1", false), ("fd12:3456::1", false),  // unique local
        ("fe80::1", false), ("febf::1", false),  // link local
        ("fec0::1", false),  // site-local (deprecated)
        ("ff02::1", false),  // multicast
        ("2606:4700::1111", true), ("2a00:1450:4001::200e", true),
    ]

    static let embedded: [(String, Bool)] = [
        ("::127.0.0.1", false), ("::8.8.8.8", true),  // IPv4-compatible
        ("::ffff:0:127.0.0.1", false), ("::ffff:0:8.8.8.8", true),  // IPv4-translated
        ("2002:7f00:1::1", false), ("2002:a9fe:a9fe::1", false), ("2002:c058:6301::1", false), ("2002:808:808::1", true),  // 6to4
        // Teredo: server 65.54.227.120; client inverted in the last 32 bits.
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", false),  // client 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", true),  // client 8.8.8.8
        ("2001:0:a00:1:8000:63bf:f7f7:f7f7", false),  // server 10.0.0.1
    ]

    @Test(arguments: ipv4Rows + ipv6Rows + embedded)
    func everyRowDecides(address: String, allowed: Bool) {
        let refusal = OutboundURLPolicy.refusal(forAddress: address)
        #expect((refusal == nil) == allowed, "\(address): \(refusal ?? "allowed")")
    }

    @Test func theCodeCoversEveryRowOfTheRegistries() {
        // The registries' prefixes: each one is in the code's table with the same length.
        let prefixes = [
            "0.0.0.0/8", "0.0.0.0/32", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
            "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/32", "192.0.0.171/32",
            "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24",
            "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
            "::1/128", "::/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23",
            "2001::/32", "2001:1::1/128", "2001:1::2/128", "2001:1::3/128", "2001:2::/48", "2001:3::/32", "2001:4:112::/48",
            "2001:10::/28", "2001:20::/28", "2001:30::/28", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20",
            "5f00::/16", "fc00::/7", "fe80::/10",
        ]
        let table = Set((SpecialPurposeAddresses.ipv4 + SpecialPurposeAddresses.ipv6).map(\.range))
        for prefix in prefixes { #expect(table.contains(AddressRange(prefix)!), "\(prefix) missing") }
    }

    @Test func everySpellingOfAnAddressIsOneAddress() {
        #expect(IPAddress("[::ffff:7f00:1]") == IPAddress("::ffff:127.0.0.1"))
        #expect(IPAddress("fe80::1%eth0")?.description == "fe80::1")
        #expect(IPAddress("0x7f.1") == nil && IPAddress("2130706433") == nil)  // URL hosts, resolved first
        #expect(AddressRange("10.0.0.0/8")!.contains("10.255.0.1") && !AddressRange("10.0.0.0/8")!.contains("11.0.0.1"))
        #expect(!AddressRange("::/0")!.contains("1.2.3.4"))
    }
}

/// Counts the blocking lookups a resolver makes; names under `dead.` zones never answer (until
/// `release`), others answer at once.
final class LookupLog: Sendable {
    let calls = Mutex<[String]>([])
    let released = Mutex(false)

    func lookup(_ name: String) -> [String] {
        calls.withLock { $0.append(name) }
        if name.hasSuffix("dead.example") || name.hasSuffix("dead.co.uk") {
            let deadline = Date(timeIntervalSinceNow: 20)
            while Date() < deadline, !released.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.01) }
            return []
        }
        return ["93.184.215.14"]
    }
}

/// The resolver is bounded, runs on no pool anything else needs, and one owner's dead names do
/// not take it from others.
@Suite struct NameResolverTests {
    static func failure(_ resolver: SystemNameResolver, _ host: String) async -> ResolutionError.Kind? {
        do {
            _ = try await resolver.addresses(of: host)
            return nil
        } catch { return error.kind }
    }

    @Test func aLookupThatNeverAnswersIsCutOffAndLeavesOtherPoolsFree() async throws {
        let log = LookupLog()
        let resolver = SystemNameResolver(threads: 2, timeout: .milliseconds(200), maxWaiting: 2) { log.lookup($0) }
        defer { log.released.withLock { $0 = true } }
        let clock = ContinuousClock()
        let started = clock.now
        async let first = Self.failure(resolver, "a.dead.example")
        async let second = Self.failure(resolver, "b.dead.example")
        // Both lookups are on the resolver's threads (a loaded machine may take a while to start them).
        #expect(await eventually { log.calls.withLock { $0.count } >= 2 })
        // Past maxWaiting a caller is told at once.
        #expect(await Self.failure(resolver, "c.example") == .busy)
        // The shared NIO pool (SQLite's) is not behind the stuck lookups.
        try await NIOThreadPool.singleton.runIfActive { () }
        #expect(await [first, second] == [.timedOut, .timedOut])
        #expect(clock.now - started < .seconds(10))  // the lookups themselves block for 20 s (until released)
        #expect(try await resolver.addresses(of: "[::1]") == ["::1"])  // numeric: no lookup
    }

    @Test func oneZonesDeadNamesLeaveTheOthersResolving() async throws {
        let log = LookupLog()
        let resolver = SystemNameResolver(threads: 6, timeout: .milliseconds(300), maxWaiting: 64, maxPerZone: 2) { log.lookup($0) }
        defer { log.released.withLock { $0 = true } }
        async let one = Self.failure(resolver, "x1.dead.example")
        async let two = Self.failure(resolver, "x2.dead.example")
        try await Task.sleep(for: .milliseconds(50))
        #expect(await Self.failure(resolver, "x3.dead.example") == .busy)  // the zone's share is used
        #expect(try await resolver.addresses(of: "hooks.other.example") == ["93.184.215.14"])
        #expect(await [one, two] == [.timedOut, .timedOut])
        // Zones under a country's second level are one label longer.
        async let uk1 = Self.failure(resolver, "a.dead.co.uk")
        async let uk2 = Self.failure(resolver, "b.dead.co.uk")
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await resolver.addresses(of: "www.alive.co.uk") == ["93.184.215.14"])
        _ = await [uk1, uk2]
    }

    @Test func oneNameIsLookedUpOnceAndAbandonedLookupsAreDropped() async throws {
        let log = LookupLog()
        let resolver = SystemNameResolver(threads: 1, timeout: .milliseconds(200), maxWaiting: 64) { log.lookup($0) }
        // Three callers of one stuck name share one lookup; a queued name behind it is abandoned
        // by its caller and never looked up.
        async let a = Self.failure(resolver, "same.dead.example")
        async let b = Self.failure(resolver, "same.dead.example")
        async let c = Self.failure(resolver, "same.dead.example")
        // The stuck lookup holds the only thread before the next name queues (waited for, not
        // slept on: under a loaded test run the callers may start late).
        for _ in 0..<200 where log.calls.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(5)) }
        #expect(await Self.failure(resolver, "queued.example") == .timedOut)
        #expect(await [a, b, c] == [.timedOut, .timedOut, .timedOut])
        log.released.withLock { $0 = true }
        try await Task.sleep(for: .milliseconds(300))
        #expect(log.calls.withLock { $0 } == ["same.dead.example"])
        #expect(try await resolver.addresses(of: "fresh.example") == ["93.184.215.14"])
    }

    @Test func theSystemResolverFindsLocalhost() async throws {
        let addresses = try await SystemNameResolver.shared.addresses(of: "localhost")
        #expect(addresses.contains { $0 == "127.0.0.1" || $0 == "::1" })
    }
}
