import Crypto
import Foundation

/// AWS credentials: an access key pair, optionally temporary (session token, expiry).
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials expire; nil for long-term keys.
    public var expiration: Date?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }
}

/// A request to sign: method, the path as sent on the wire (percent-encoded), the raw query
/// string, headers and the body's SHA-256 (or `UNSIGNED-PAYLOAD`).
public struct SigningRequest: Sendable {
    public var method: String
    public var path: String
    public var query: String
    /// Header name and value pairs, in order; duplicate names are allowed.
    public var headers: [(String, String)]
    public var payloadHash: String

    public init(method: String, path: String, query: String = "", headers: [(String, String)], payloadHash: String) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.payloadHash = payloadHash
    }
}

/// Signature Version 4 (`AWS4-HMAC-SHA256`): header signing and presigned URLs.
///
/// Path rules: for every service but S3 the canonical URI is the normalised path (dot segments and
/// repeated slashes removed) URI-encoded once more; S3 uses the path exactly as sent. Query
/// parameters are decoded, re-encoded strictly (RFC 3986 unreserved characters only) and sorted.
/// Header values are trimmed, internal runs of spaces collapsed, and repeated headers joined by
/// commas in their original order.
public struct SigV4Signer: Sendable {
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// The payload hash S3 accepts for unsigned bodies (presigned URLs, streaming).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// SHA-256 of the empty string.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public let service: String
    public let region: String
    /// S3 rules: no path normalisation or second encoding.
    public let isS3: Bool

    public init(service: String, region: String) {
        self.service = service
        self.region = region
        self.isS3 = service == "s3"
    }

    /// The parts of one signature, exposed for tests and debugging.
    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var signedHeaders: String
        public var credentialScope: String
    }

    /// Signs `request` at `date`, returning the headers to add (`Authorization`, `X-Amz-Date`,
    /// `X-Amz-Security-Token` when the credentials carry one, and for S3 `X-Amz-Content-Sha256`).
    /// With `signSecurityToken` false the token is added after signing (the services that want it so).
    public func signedHeaders(
        for request: SigningRequest, credentials: AWSCredentials, date: Date, signSecurityToken: Bool = true
    ) -> (headers: [(String, String)], signature: Signature) {
        let timestamp = Self.timestamp(date)
        var headers = request.headers
        var added: [(String, String)] = []
        func ensure(_ name: String, _ value: String) {
            if !headers.contains(where: { $0.0.lowercased() == name.lowercased() }) {
                headers.append((name, value))
                added.append((name, value))
            }
        }
        ensure("X-Amz-Date", timestamp)
        if isS3 { ensure("X-Amz-Content-Sha256", request.payloadHash) }
        var tokenAfter: (String, String)?
        if let token = credentials.sessionToken {
            if signSecurityToken { ensure("X-Amz-Security-Token", token) } else { tokenAfter = ("X-Amz-Security-Token", token) }
        }
        var signing = request
        signing.headers = headers
        let signature = sign(signing, credentials: credentials, timestamp: timestamp)
        added.append((
            "Authorization",
            "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(signature.credentialScope), "
                + "SignedHeaders=\(signature.signedHeaders), Signature=\(signature.signature)"
        ))
        if let tokenAfter { added.append(tokenAfter) }
        return (added, signature)
    }

    /// A presigned URL query: the request's query plus the `X-Amz-*` signing parameters, for a URL
    /// valid `expires` seconds from `date` (1 s … 7 days). Only `host` (and any given headers) is signed.
    public func presignedQuery(
        method: String, path: String, query: String = "", host: String, credentials: AWSCredentials, date: Date,
        expires: Int, payloadHash: String = SigV4Signer.unsignedPayload, signedHeaders: [(String, String)] = []
    ) -> String {
        let timestamp = Self.timestamp(date)
        let scope = credentialScope(timestamp)
        var parameters = Self.parseQuery(query)
        parameters.append(("X-Amz-Algorithm", Self.algorithm))
        parameters.append(("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope)"))
        parameters.append(("X-Amz-Date", timestamp))
        parameters.append(("X-Amz-Expires", String(max(1, min(expires, 604_800)))))
        if let token = credentials.sessionToken { parameters.append(("X-Amz-Security-Token", token)) }
        // Headers the URL's user must send with exactly these values (S3 refuses anything else).
        let headers = [("host", host)] + signedHeaders.map { ($0.0.lowercased(), $0.1) }
        parameters.append(("X-Amz-SignedHeaders", headers.map(\.0).sorted().joined(separator: ";")))
        let canonicalQuery = Self.canonicalQuery(parameters)
        let request = SigningRequest(method: method, path: path, query: canonicalQuery, headers: headers, payloadHash: payloadHash)
        let signature = sign(request, credentials: credentials, timestamp: timestamp)
        return canonicalQuery + "&X-Amz-Signature=" + signature.signature
    }

    /// Computes the signature of a request whose headers already include `X-Amz-Date` (and the
    /// token, when signed).
    public func sign(_ request: SigningRequest, credentials: AWSCredentials, timestamp: String) -> Signature {
        let canonicalHeaders = Self.canonicalHeaders(request.headers)
        let signedHeaders = canonicalHeaders.map(\.name).joined(separator: ";")
        let canonicalRequest = [
            request.method.uppercased(),
            canonicalURI(request.path),
            Self.canonicalQuery(Self.parseQuery(request.query)),
            canonicalHeaders.map { "\($0.name):\($0.value)\n" }.joined(),
            signedHeaders,
            request.payloadHash,
        ].joined(separator: "\n")
        let scope = credentialScope(timestamp)
        let stringToSign = [Self.algorithm, timestamp, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        let key = signingKey(secret: credentials.secretAccessKey, day: String(timestamp.prefix(8)))
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        return Signature(
            canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature,
            signedHeaders: signedHeaders, credentialScope: scope)
    }

    func credentialScope(_ timestamp: String) -> String {
        "\(timestamp.prefix(8))/\(region)/\(service)/aws4_request"
    }

    private func signingKey(secret: String, day: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)))
        }
        let dateKey = hmac(SymmetricKey(data: Data("AWS4\(secret)".utf8)), day)
        return hmac(hmac(hmac(dateKey, region), service), "aws4_request")
    }

    /// The canonical URI of a wire path (public for tests of the path rules).
    public func canonicalPath(_ path: String) -> String { canonicalURI(path) }

    func canonicalURI(_ path: String) -> String {
        let raw = path.isEmpty ? "/" : path
        if isS3 { return raw }
        return URIEncoding.encode(Self.normalize(raw), keepSlash: true)
    }

    /// Removes `.` and `..` segments and repeated slashes, keeping a trailing slash.
    static func normalize(_ path: String) -> String {
        var output: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." { continue }
            if segment == ".." {
                _ = output.popLast()
                continue
            }
            output.append(segment)
        }
        var result = "/" + output.joined(separator: "/")
        let last = path.split(separator: "/", omittingEmptySubsequences: false).last
        if path.hasSuffix("/") || last == "." || last == "..", result != "/" { result += "/" }
        return result
    }

    static func parseQuery(_ query: String) -> [(String, String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = URIEncoding.decode(String(parts[0]))
            let value = parts.count > 1 ? URIEncoding.decode(String(parts[1])) : ""
            return (key, value)
        }
    }

    static func canonicalQuery(_ parameters: [(String, String)]) -> String {
        let encoded: [(key: String, value: String)] = parameters.map { pair in
            (URIEncoding.encode(pair.0, keepSlash: false), URIEncoding.encode(pair.1, keepSlash: false))
        }
        let sorted = encoded.sorted { lhs, rhs in lhs.key == rhs.key ? lhs.value < rhs.value : lhs.key < rhs.key }
        return sorted.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
    }

    static func canonicalHeaders(_ headers: [(String, String)]) -> [(name: String, value: String)] {
        var values: [String: [String]] = [:]
        var order: [String] = []
        for (name, value) in headers {
            let key = name.lowercased()
            if values[key] == nil { order.append(key) }
            values[key, default: []].append(collapse(value))
        }
        return order.sorted().map { ($0, values[$0]!.joined(separator: ",")) }
    }

    /// Trims and collapses runs of whitespace (including folded lines) into one space.
    static func collapse(_ value: String) -> String {
        let whitespace: Set<Character> = [" ", "\t", "\n", "\r", "\r\n"]
        return value.split(whereSeparator: { whitespace.contains($0) }).joined(separator: " ")
    }

    /// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
    public static func timestamp(_ date: Date) -> String { UTCTime.compactTimestamp(date) }

    /// Parses a `YYYYMMDD'T'HHMMSS'Z'` timestamp.
    public static func date(fromTimestamp text: String) -> Date? { UTCTime.date(compactTimestamp: text) }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        Hex.lowercase(digest)
    }

    /// Hex SHA-256 of `data`, the payload hash of a signed body.
    public static func payloadHash(_ data: Data) -> String { hex(SHA256.hash(data: data)) }
}

/// RFC 3986 percent-encoding as SigV4 requires it.
public enum URIEncoding {
    private static let unreserved: Set<UInt8> = Set(
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8))

    /// Encodes every byte but the unreserved characters (and `/` when `keepSlash`).
    public static func encode(_ text: String, keepSlash: Bool) -> String {
        var output = ""
        output.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if unreserved.contains(byte) || (keepSlash && byte == UInt8(ascii: "/")) {
                output.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                output += Hex.percentEscape(byte)
            }
        }
        return output
    }

    /// An `application/x-www-form-urlencoded` body as the AWS SDKs write it (unreserved characters
    /// kept, space as `+`, everything else percent-encoded).
    public static func formEncode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(formComponent($0.0))=\(formComponent($0.1))" }.joined(separator: "&")
    }

    static func formComponent(_ text: String) -> String {
        encode(text, keepSlash: false).replacing("%20", with: "+")
    }

    /// Decodes percent-escapes; a `%` not followed by two hex digits is kept as it is, and text
    /// whose escapes do not decode to UTF-8 is returned unchanged.
    public static func decode(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = Hex.value(of: bytes[index + 1]), let low = Hex.value(of: bytes[index + 2]) {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self) ?? text
    }
}
