import Crypto
import Foundation
import SDQAWS
import Yams

/// What an API key may do.
public enum APIRole: String, Sendable, Equatable {
    /// Submits tasks and sees only its own tasks and uploads.
    case client
    /// Also reads (and cancels) every tenant's tasks.
    case `operator`
}

/// Who a request acts for: the tenant that owns the tasks, uploads and idempotency keys it creates.
public struct Tenant: Sendable, Equatable, CustomStringConvertible {
    /// The tenant's name: a key's configured name, `key-` and 12 hex digits of the SHA-256 of an
    /// unnamed key, or `anonymous` on an open API.
    public var name: String
    public var role: APIRole
    /// The tenant's quotas (``TenantQuotas``); none unless its key file entry sets them.
    public var quotas: TenantQuotas
    /// The tenant's prompt policy (``PromptPolicy``), from its key file entry.
    public var policy: PromptPolicy?

    public init(name: String, role: APIRole = .client, quotas: TenantQuotas = .none, policy: PromptPolicy? = nil) {
        self.name = name
        self.role = role
        self.quotas = quotas
        self.policy = policy
    }

    /// The one tenant of an API with no keys.
    public static let anonymous = Tenant(name: "anonymous")

    /// Whether this tenant may see a task or upload owned by `owner` (nil: written before tenants
    /// had names on an open API, which is `anonymous`).
    public func mayAccess(ownedBy owner: String?) -> Bool {
        role == .operator || (owner ?? Tenant.anonymous.name) == name
    }

    public var description: String { name }
}

/// The API keys a deployment accepts and the tenant each one is.
///
/// Keys come from `SDQ_API_KEYS` (a comma-separated list; each key is its own tenant, named
/// `key-` + 12 hex digits of its SHA-256, the form records already carry) or from a key file
/// named by `SDQ_API_KEYS_FILE` (YAML or JSON; a path, or on AWS `secretsmanager:ID` or
/// `ssm:NAME` — see ``APIKeyringSource``):
///
/// ```yaml
/// keys:
///   - name: alice            # the tenant; optional (default key-…), [A-Za-z0-9._-], 1...64
///     key: sk-live-…         # the key itself, or instead:
///     # key_sha256: 64 hex   # its SHA-256, so the file need not hold the key
///     role: client           # client (default) or operator
///     quotas:                # optional, see TenantQuotas
///       submissions_per_minute: 60
///       max_in_flight: 20
/// ```
///
/// Several keys may name one tenant (with the same role and quotas): that is how a key is
/// rotated. A running API re-reads the file (``LiveKeyring``).
///
/// Only digests are kept in memory; a presented key is hashed once and compared with every
/// configured digest in constant time.
public struct APIKeyring: Sendable {
    /// One accepted key.
    public struct Entry: Sendable, Equatable {
        public var tenant: Tenant
        /// SHA-256 of the key.
        public var digest: [UInt8]
        /// The key's `quotas` object as written (keys of one tenant must agree on it).
        public var quotas: JSONValue?
    }

    public let entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    /// An API with no keys: every request is ``Tenant/anonymous``.
    public static let open = APIKeyring(entries: [])

    /// Whether the API accepts requests without a key.
    public var isOpen: Bool { entries.isEmpty }

    /// A keyring of unnamed client keys.
    public init(keys: [String]) {
        self.entries = keys.map { key in
            let digest = Array(SHA256.hash(data: Data(key.utf8)))
            return Entry(tenant: Tenant(name: Self.hashedName(digest)), digest: digest)
        }
    }

    /// The tenant `presented` authenticates as; ``Tenant/anonymous`` on an open API; nil when a
    /// key is required and `presented` is missing or unknown.
    public func tenant(presenting presented: String?) -> Tenant? {
        if isOpen { return .anonymous }
        guard let presented else { return nil }
        let digest = Array(SHA256.hash(data: Data(presented.utf8)))
        var found: Tenant?
        // Every entry is compared in full, without an early exit, so timing reveals nothing.
        for entry in entries {
            var difference: UInt8 = 0
            for (a, b) in zip(entry.digest, digest) { difference |= a ^ b }
            if difference == 0 && found == nil { found = entry.tenant }
        }
        return found
    }

    /// `key-` and the first 12 hex digits of a key's SHA-256.
    static func hashedName(_ digest: [UInt8]) -> String {
        "key-" + Hex.lowercase(digest.prefix(6))
    }

    /// The keys of `SDQ_API_KEYS` (comma-separated). A value that lists no key is an error (an
    /// operator who set the variable meant to close the API).
    public static func keys(inList list: String) throws(ConfigurationError) -> [String] {
        let keys = list.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !keys.isEmpty else {
            throw ConfigurationError(message: "is set but lists no key; unset it to run an open API", field: "SDQ_API_KEYS")
        }
        return keys
    }

    /// Parses `SDQ_API_KEYS` (``keys(inList:)``): one unnamed client tenant per key.
    public static func parse(list: String) throws(ConfigurationError) -> APIKeyring {
        APIKeyring(keys: try keys(inList: list))
    }

    /// Parses a key file (YAML or JSON); `source` names it in errors.
    public static func parse(file text: String, source: String) throws(ConfigurationError) -> APIKeyring {
        let field = "SDQ_API_KEYS_FILE"
        func fail(_ message: String) -> ConfigurationError { ConfigurationError(message: "\(source): \(message)", field: field) }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw fail("not YAML or JSON: \(error)") }
        guard let list = root?["keys"]?.sequence else { throw fail("must be an object with a keys list") }
        var entries: [Entry] = []
        var names: Set<String> = []
        for (index, item) in list.enumerated() {
            guard let spec = item.mapping else { throw fail("keys[\(index)] must be an object") }
            // Scalars are read as text: a key of digits stays a key.
            func text(_ name: String) throws(ConfigurationError) -> String? {
                guard let node = spec[name] else { return nil }
                guard let scalar = node.scalar else { throw fail("keys[\(index)].\(name) must be a string") }
                return scalar.string
            }
            for key in spec.keys {
                guard let name = key.string, ["name", "key", "key_sha256", "role", "quotas", "policy"].contains(name) else {
                    throw fail("keys[\(index)].\(key.string ?? "?") is not a key setting")
                }
            }
            let digest: [UInt8]
            switch (try text("key"), try text("key_sha256")) {
            case (let key?, nil) where !key.trimmingWhitespace().isEmpty:
                digest = Array(SHA256.hash(data: Data(key.utf8)))
            case (nil, let hex?):
                guard let bytes = Self.bytes(hex: hex), bytes.count == 32 else { throw fail("keys[\(index)].key_sha256 must be 64 hex digits") }
                digest = bytes
            default:
                throw fail("keys[\(index)] needs exactly one of key (a non-empty string) and key_sha256")
            }
            let role: APIRole
            if let raw = try text("role") {
                guard let parsed = APIRole(rawValue: raw) else { throw fail("keys[\(index)].role must be client or operator") }
                role = parsed
            } else {
                role = .client
            }
            let name: String
            if let raw = try text("name") {
                guard Self.isValidName(raw) else {
                    throw fail("keys[\(index)].name must be 1...64 of A-Z a-z 0-9 . _ -, not anonymous or key-…")
                }
                name = raw
            } else {
                name = hashedName(digest)
            }
            guard !entries.contains(where: { $0.digest == digest }) else { throw fail("keys[\(index)]: the same key appears twice") }
            var quotas: JSONValue?
            if let raw = spec["quotas"] {
                guard raw.mapping != nil else { throw fail("keys[\(index)].quotas must be an object") }
                quotas = Self.json(raw)
            }
            var policy: PromptPolicy?
            if let raw = spec["policy"] {
                do { policy = try PromptPolicy.parse(Self.json(raw), path: "keys[\(index)].policy") } catch { throw fail(error.message) }
            }
            var limits = TenantQuotas.none
            if let quotas {
                do { limits = try TenantQuotas.parse(quotas, path: "keys[\(index)].quotas") } catch { throw fail(error.message) }
            }
            // Several keys may be one tenant (a rotation: the new key is added, clients move, the
            // old one is removed) when they agree on its role and quotas. Names differing only in
            // case would share folders on case-insensitive file systems.
            if let same = entries.first(where: { $0.tenant.name == name }) {
                guard same.tenant.role == role, same.quotas == quotas, same.tenant.policy == policy else {
                    throw fail("keys[\(index)]: tenant \(name) appears again with another role, other quotas or another policy")
                }
            } else if !names.insert(name.lowercased()).inserted {
                throw fail("keys[\(index)]: tenant \(name) differs from another only in case")
            }
            entries.append(Entry(tenant: Tenant(name: name, role: role, quotas: limits, policy: policy), digest: digest, quotas: quotas))
        }
        guard !entries.isEmpty else { throw fail("lists no key; remove SDQ_API_KEYS_FILE to run an open API") }
        return APIKeyring(entries: entries)
    }

    /// A YAML node as JSON (scalars by their YAML type: numbers, booleans, null, else text).
    private static func json(_ node: Node) -> JSONValue {
        switch node {
        case .mapping(let mapping):
            return .object(Dictionary(mapping.map { ($0.key.string ?? "", json($0.value)) }, uniquingKeysWith: { $1 }))
        case .sequence(let sequence): return .array(sequence.map(json))
        case .scalar(let scalar):
            if let value = Bool.construct(from: scalar) { return .bool(value) }
            if let value = Double.construct(from: scalar) { return .number(value) }
            if NSNull.construct(from: scalar) != nil, scalar.style == .plain { return .null }
            return .string(scalar.string)
        case .alias: return .null
        }
    }

    /// Whether `name` can be a tenant's name at all: a key file's name, `anonymous`, or
    /// `key-` and 12 hex digits (an operator naming a tenant in a request is checked with it).
    public static func isTenantName(_ name: String) -> Bool {
        if isValidName(name) || name == Tenant.anonymous.name { return true }
        let hex = name.dropFirst(4)
        return name.hasPrefix("key-") && hex.count == 12 && hex.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// Whether `name` may name a tenant: it becomes part of object keys and SNS attributes.
    static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), name != Tenant.anonymous.name, !name.hasPrefix("key-"),
            !name.hasPrefix("."), !name.hasPrefix("-")
        else { return false }
        return name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-")
        }
    }

    private static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.lowercased().utf8)
        guard digits.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
            result.append(byte)
        }
        return result
    }
}
