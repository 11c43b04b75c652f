import Foundation

/// The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and its updates, as
/// published in 2025), plus the ranges outside them that are no destination for a client-named
/// URL: multicast, the deprecated IPv6 site-local range and the IPv4-compatible and
/// IPv4-translated forms.
///
/// ``judge(_:)`` applies the most specific row containing an address: a row whose "Globally
/// Reachable" is false refuses it; a row that embeds an IPv4 address (IPv4-mapped,
/// IPv4-compatible, IPv4-translated, NAT64 `64:ff9b::/96`, 6to4, Teredo) has that address
/// decoded and judged as IPv4 (Teredo: its server and its client); a globally reachable row, or
/// no row, allows it.
public enum SpecialPurposeAddresses {
    /// What a row says about its addresses.
    public enum Reach: Sendable, Equatable {
        /// "Globally Reachable: True".
        case global
        /// "Globally Reachable: False" (or not a unicast destination at all).
        case notGlobal
        /// The address carries an IPv4 address that decides.
        case embedsIPv4(Embedding)
    }

    /// Where an IPv6 form keeps its IPv4 address.
    public enum Embedding: Sendable, Equatable {
        /// The last 32 bits (mapped, compatible, translated, NAT64 well-known prefix).
        case lastBits
        /// Bits 16...47 (6to4, `2002:AABB:CCDD::`).
        case sixToFour
        /// Teredo: the server in bits 32...63, the client in the last 32 bits, inverted.
        case teredo
    }

    /// One registry row.
    public struct Row: Sendable, Equatable {
        public let range: AddressRange
        public let name: String
        public let reach: Reach

        init(_ prefix: String, _ name: String, _ reach: Reach) {
            guard let range = AddressRange(prefix) else { preconditionFailure("bad prefix \(prefix)") }
            self.range = range
            self.name = name
            self.reach = reach
        }
    }

    public static let ipv4: [Row] = [
        Row("0.0.0.0/8", "\"This network\"", .notGlobal),
        Row("0.0.0.0/32", "\"This host on this network\"", .notGlobal),
        Row("10.0.0.0/8", "Private-Use", .notGlobal),
        Row("100.64.0.0/10", "Shared Address Space", .notGlobal),
        Row("127.0.0.0/8", "Loopback", .notGlobal),
        Row("169.254.0.0/16", "Link Local", .notGlobal),
        Row("172.16.0.0/12", "Private-Use", .notGlobal),
        Row("192.0.0.0/24", "IETF Protocol Assignments", .notGlobal),
        Row("192.0.0.0/29", "IPv4 Service Continuity Prefix", .notGlobal),
        Row("192.0.0.8/32", "IPv4 dummy address", .notGlobal),
        Row("192.0.0.9/32", "Port Control Protocol Anycast", .global),
        Row("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", .global),
        Row("192.0.0.170/32", "NAT64/DNS64 Discovery", .notGlobal),
        Row("192.0.0.171/32", "NAT64/DNS64 Discovery", .notGlobal),
        Row("192.0.2.0/24", "Documentation (TEST-NET-1)", .notGlobal),
        Row("192.31.196.0/24", "AS112-v4", .global),
        Row("192.52.193.0/24", "AMT", .global),
        // Deprecated by RFC 7526; relays there are not a destination sdq should reach.
        Row("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", .notGlobal),
        Row("192.168.0.0/16", "Private-Use", .notGlobal),
        Row("192.175.48.0/24", "Direct Delegation AS112 Service", .global),
        Row("198.18.0.0/15", "Benchmarking", .notGlobal),
        Row("198.51.100.0/24", "Documentation (TEST-NET-2)", .notGlobal),
        Row("203.0.113.0/24", "Documentation (TEST-NET-3)", .notGlobal),
        Row("240.0.0.0/4", "Reserved", .notGlobal),
        Row("255.255.255.255/32", "Limited Broadcast", .notGlobal),
        // Outside the registry: not a unicast destination.
        Row("224.0.0.0/4", "Multicast", .notGlobal),
    ]

    public static let ipv6: [Row] = [
        Row("::1/128", "Loopback Address", .notGlobal),
        Row("::/128", "Unspecified Address", .notGlobal),
        Row("::ffff:0:0/96", "IPv4-mapped Address", .embedsIPv4(.lastBits)),
        Row("64:ff9b::/96", "IPv4-IPv6 Translat.", .embedsIPv4(.lastBits)),
        Row("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", .notGlobal),
        Row("100::/64", "Discard-Only Address Block", .notGlobal),
        Row("100:0:0:1::/64", "Dummy IPv6 Prefix", .notGlobal),
        Row("2001::/23", "IETF Protocol Assignments", .notGlobal),
        Row("2001::/32", "TEREDO", .embedsIPv4(.teredo)),
        Row("2001:1::1/128", "Port Control Protocol Anycast", .global),
        Row("2001:1::2/128", "Traversal Using Relays around NAT Anycast", .global),
        Row("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", .global),
        Row("2001:2::/48", "Benchmarking", .notGlobal),
        Row("2001:3::/32", "AMT", .global),
        Row("2001:4:112::/48", "AS112-v6", .global),
        Row("2001:10::/28", "Deprecated (previously ORCHID)", .notGlobal),
        Row("2001:20::/28", "ORCHIDv2", .global),
        Row("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", .global),
        Row("2001:db8::/32", "Documentation", .notGlobal),
        Row("2002::/16", "6to4", .embedsIPv4(.sixToFour)),
        Row("2620:4f:8000::/48", "Direct Delegation AS112 Service", .global),
        Row("3fff::/20", "Documentation", .notGlobal),
        Row("5f00::/16", "Segment Routing (SRv6) SIDs", .notGlobal),
        Row("fc00::/7", "Unique-Local", .notGlobal),
        Row("fe80::/10", "Link-Local Unicast", .notGlobal),
        // Outside the registry.
        Row("::/96", "IPv4-compatible Address (deprecated)", .embedsIPv4(.lastBits)),
        Row("::ffff:0:0:0/96", "IPv4-translated Address", .embedsIPv4(.lastBits)),
        Row("fec0::/10", "Site-Local (deprecated)", .notGlobal),
        Row("ff00::/8", "Multicast", .notGlobal),
    ]

    /// The most specific row containing `address`, if any.
    public static func row(for address: IPAddress) -> Row? {
        (address.isIPv4 ? ipv4 : ipv6).filter { $0.range.contains(address) }.max { $0.range.length < $1.range.length }
    }

    /// Nil when `address` may be a destination; otherwise why not.
    public static func refusal(for address: IPAddress) -> String? {
        guard let row = row(for: address) else { return nil }
        switch row.reach {
        case .global: return nil
        case .notGlobal: return "\(address) is in \(row.range) (\(row.name)), which is not globally reachable"
        case .embedsIPv4(let embedding):
            let b = address.bytes
            let carried: [[UInt8]] =
                switch embedding {
                case .lastBits: [Array(b[12..<16])]
                case .sixToFour: [Array(b[2..<6])]
                case .teredo: [Array(b[4..<8]), b[12..<16].map { ~$0 }]
                }
            for bytes in carried {
                guard let inner = IPAddress(bytes: bytes) else { continue }
                if let reason = refusal(for: inner) { return "\(address) (\(row.name)) carries \(inner): \(reason)" }
            }
            return nil
        }
    }
}
