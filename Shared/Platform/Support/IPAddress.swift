import Foundation
import SDQAWS

/// A numeric IPv4 or IPv6 address as its bytes (4 or 16).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses dotted-quad IPv4 (exactly four decimal parts) or any IPv6 text form (with an
    /// optional `%zone`, and in brackets).
    public init?(_ text: String) {
        var value = text
        if value.hasPrefix("["), value.hasSuffix("]") { value = String(value.dropFirst().dropLast()) }
        if let zone = value.firstIndex(of: "%") { value = String(value[..<zone]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, value, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, value, &v6) == 1 else { return nil }
        bytes = withUnsafeBytes(of: &v6) { Array($0) }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var description: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
        guard inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An address prefix (`10.0.0.0/8`, `fc00::/7`); a bare address is a /32 or /128.
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let length: Int

    public init?(_ text: String) {
        let parts = text.trimmingWhitespace().split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let address = IPAddress(first) else { return nil }
        let bits = address.bytes.count * 8
        let length = parts.count == 2 ? Int(parts[1]) : bits
        guard let length, (0...bits).contains(length) else { return nil }
        self.network = address
        self.length = length
    }

    /// Whether `address` lies in this range. An IPv4-mapped IPv6 address (how a dual-stack
    /// listener sees IPv4 peers) counts as its IPv4 address; otherwise an IPv4 range never
    /// contains an IPv6 address.
    public func contains(_ address: IPAddress) -> Bool {
        var address = address
        let b = address.bytes
        if b.count == 16, network.isIPv4, b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff,
            let v4 = IPAddress(bytes: Array(b[12..<16]))
        {
            address = v4
        }
        guard address.bytes.count == network.bytes.count else { return false }
        var remaining = length
        for (a, b) in zip(address.bytes, network.bytes) where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xff : ~(0xff >> UInt8(remaining))
            if a & mask != b & mask { return false }
            remaining -= 8
        }
        return true
    }

    /// Whether the address in `text` lies in this range (false when it is not an address).
    public func contains(_ text: String) -> Bool { IPAddress(text).map(contains) ?? false }

    public var description: String { "\(network)/\(length)" }

    /// A comma-separated list of ranges (settings such as `SDQ_TRUSTED_PROXIES`).
    public static func parseList(_ text: String, field: String) throws(ConfigurationError) -> [AddressRange] {
        try text.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }.map {
            item throws(ConfigurationError) in
            guard let range = AddressRange(item) else {
                throw ConfigurationError(message: "\(item) is not an address or prefix (10.0.0.0/8, fd00::/8)", field: field)
            }
            return range
        }
    }
}
