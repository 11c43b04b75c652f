import Foundation

/// An optional prompt policy, checked at submission before any GPU is spent: a local block list
/// and/or an HTTP callout with a time budget. Set per tenant (the key file's `policy`) and per pool
/// (the pools file's `pools[].policy`); a task must pass both.
///
/// ```yaml
/// policy:
///   block: [gore, "another phrase"]   # case-insensitive, whole words, in the prompt (and a
///                                     # ComfyUI workflow's text inputs); never the negative prompt
///   callout:
///     url: https://policy.example.com/check   # same address rules as webhooks
///     timeout_ms: 800                 # the time budget (default 1000, at most 10000)
///     on_error: refuse                # refuse (503 policy_unavailable, default) or allow
/// ```
///
/// The callout receives `POST {"tenant", "pool", "model", "kind", "prompt", "negative_prompt"}`
/// and answers `200 {"allow": true}` or `200 {"allow": false, "reason": "…"}`; the reason goes
/// back to the client with `400 policy_refused`. Anything else (another status, a body that is
/// not that, no answer within the budget, a destination the address rules refuse) is an error.
public struct PromptPolicy: Sendable, Equatable, Codable {
    /// Blocked terms, lower-cased.
    public var block: [String]
    public var callout: Callout?

    /// The HTTP callout.
    public struct Callout: Sendable, Equatable, Codable {
        public var url: String
        public var timeoutMillis: Int
        /// Whether a callout that fails lets the task through.
        public var allowOnError: Bool

        public init(url: String, timeoutMillis: Int = 1000, allowOnError: Bool = false) {
            self.url = url
            self.timeoutMillis = timeoutMillis
            self.allowOnError = allowOnError
        }

        enum CodingKeys: String, CodingKey {
            case url, timeoutMillis = "timeout_ms", onError = "on_error"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            url = try c.decode(String.self, forKey: .url)
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""), parsed.host != nil else {
                throw DecodingError.dataCorruptedError(forKey: .url, in: c, debugDescription: "callout.url must be an http or https URL")
            }
            timeoutMillis = try c.decodeIfPresent(Int.self, forKey: .timeoutMillis) ?? 1000
            guard (10...10_000).contains(timeoutMillis) else {
                throw DecodingError.dataCorruptedError(forKey: .timeoutMillis, in: c, debugDescription: "callout.timeout_ms must be 10...10000")
            }
            switch try c.decodeIfPresent(String.self, forKey: .onError) ?? "refuse" {
            case "refuse": allowOnError = false
            case "allow": allowOnError = true
            default: throw DecodingError.dataCorruptedError(forKey: .onError, in: c, debugDescription: "callout.on_error must be refuse or allow")
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(url, forKey: .url)
            try c.encode(timeoutMillis, forKey: .timeoutMillis)
            try c.encode(allowOnError ? "allow" : "refuse", forKey: .onError)
        }
    }

    public init(block: [String] = [], callout: Callout? = nil) {
        self.block = block.map { $0.lowercased() }
        self.callout = callout
    }

    enum CodingKeys: String, CodingKey { case block, callout }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let terms = try c.decodeIfPresent([String].self, forKey: .block) ?? []
        guard terms.count <= 10_000, terms.allSatisfy({ !$0.trimmingCharacters(in: .whitespaces).isEmpty && $0.count <= 200 }) else {
            throw DecodingError.dataCorruptedError(forKey: .block, in: c, debugDescription: "block must list at most 10000 non-empty terms of up to 200 characters")
        }
        self.init(block: terms.map { $0.trimmingCharacters(in: .whitespaces) }, callout: try c.decodeIfPresent(Callout.self, forKey: .callout))
    }

    /// Parses a policy object from a key file (`path` names it in errors).
    static func parse(_ json: JSONValue, path: String) throws(ConfigurationError) -> PromptPolicy {
        guard case .object(let object) = json else { throw ConfigurationError(message: "\(path) must be an object", field: "SDQ_API_KEYS_FILE") }
        if let unknown = object.keys.sorted().first(where: { !["block", "callout"].contains($0) }) {
            throw ConfigurationError(message: "\(path).\(unknown) is not a policy setting (block, callout)", field: "SDQ_API_KEYS_FILE")
        }
        do { return try JSONDecoder().decode(PromptPolicy.self, from: json.serialized()) } catch {
            throw ConfigurationError(message: "\(path): \(Self.describe(error))", field: "SDQ_API_KEYS_FILE")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .dataCorrupted(let context): return context.debugDescription
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        case .keyNotFound(let key, _): return "\(key.stringValue) is required"
        default: return "\(error)"
        }
    }

    /// The first blocked term found in `texts` as a whole word (letters and digits around it
    /// end a match), case-insensitively; nil when none is.
    public func blockedTerm(in texts: [String]) -> String? {
        guard !block.isEmpty else { return nil }
        for text in texts.map({ $0.lowercased() }) {
            for term in block {
                var start = text.startIndex
                while let range = text.range(of: term, range: start..<text.endIndex) {
                    let before = range.lowerBound == text.startIndex ? nil : text[text.index(before: range.lowerBound)]
                    let after = range.upperBound == text.endIndex ? nil : text[range.upperBound]
                    let isWordCharacter: (Character?) -> Bool = { $0.map { $0.isLetter || $0.isNumber } ?? false }
                    if !isWordCharacter(before) && !isWordCharacter(after) { return term }
                    start = text.index(after: range.lowerBound)
                }
            }
        }
        return nil
    }
}
