import Foundation
import SDQAWS
import SDQTestSupport
import Testing

/// Walks AWS's SigV4 test suite (as botocore ships it) and checks the canonical request, the
/// string to sign and the Authorization header of every case. Set `SDQ_SIGV4_SUITE` to a folder of
/// the same layout to run its cases too.
///
/// Case conventions taken from the suite itself: credentials `AKIDEXAMPLE` /
/// `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`, region `us-east-1`, service `service`; a case whose
/// name contains `with-session-token` signs with the session token given in its canonical request;
/// a case whose name contains `header-after` adds `X-Amz-Security-Token` after signing. No case is
/// skipped.
@Suite struct SigV4SuiteTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let directory: URL
        var testDescription: String { name }
        func file(_ suffix: String) throws -> String {
            try String(contentsOf: directory.appendingPathComponent("\(name).\(suffix)"), encoding: .utf8)
        }
    }

    /// `Tests/Fixtures/aws-sigv4-testsuite` (Apache-2.0, see `Tests/Fixtures/README.md`).
    static var bundledSuite: URL { fixtureURL("aws-sigv4-testsuite") }

    static func cases(in root: URL) -> [Case] {
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
        var found: [Case] = []
        for case let url as URL in walker where url.pathExtension == "req" {
            found.append(Case(name: url.deletingPathExtension().lastPathComponent, directory: url.deletingLastPathComponent()))
        }
        return found.sorted { $0.name < $1.name }
    }

    static var allCases: [Case] {
        var roots = [bundledSuite]
        if let extra = ProcessInfo.processInfo.environment["SDQ_SIGV4_SUITE"], !extra.isEmpty {
            roots.append(URL(fileURLWithPath: extra))
        }
        return roots.flatMap(cases(in:))
    }

    @Test func theBundledSuiteIsPresentAndComplete() {
        let names = Self.cases(in: Self.bundledSuite).map(\.name)
        #expect(names.count == 34, "found \(names.count) cases in \(Self.bundledSuite.path)")
    }

    @Test(arguments: allCases)
    func signsLikeTheSuite(_ testCase: Case) throws {
        let parsed = try RawHTTPRequest(try testCase.file("req"))
        var credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        let expectedCanonical = try testCase.file("creq")
        if testCase.name.contains("with-session-token"),
            let line = expectedCanonical.split(separator: "\n").first(where: { $0.hasPrefix("x-amz-security-token:") })
        {
            credentials.sessionToken = String(line.dropFirst("x-amz-security-token:".count))
        }
        let timestamp = try #require(parsed.headers.first { $0.0.lowercased() == "x-amz-date" }?.1)
        let date = try #require(SigV4Signer.date(fromTimestamp: timestamp))
        let signer = SigV4Signer(service: "service", region: "us-east-1")
        let signAfter = testCase.name.contains("header-after")
        var headers = parsed.headers
        var token: (String, String)?
        if signAfter, let index = headers.firstIndex(where: { $0.0.lowercased() == "x-amz-security-token" }) {
            token = headers.remove(at: index)
            credentials.sessionToken = token?.1
        }
        let request = SigningRequest(
            method: parsed.method, path: parsed.path, query: parsed.query, headers: headers,
            payloadHash: SigV4Signer.payloadHash(Data(parsed.body.utf8)))
        let (added, signature) = signer.signedHeaders(for: request, credentials: credentials, date: date, signSecurityToken: !signAfter)
        #expect(signature.canonicalRequest == expectedCanonical)
        #expect(signature.stringToSign == (try testCase.file("sts")))
        #expect(added.first { $0.0 == "Authorization" }?.1 == (try testCase.file("authz")))
        if let token { #expect(added.contains { $0.0 == token.0 && $0.1 == token.1 }) }
    }

    /// AWS's documented S3 examples (header signing with a range, and a presigned GET URL).
    @Test func s3DocumentedExamples() throws {
        let credentials = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        let date = try #require(SigV4Signer.date(fromTimestamp: "20130524T000000Z"))
        let signer = SigV4Signer(service: "s3", region: "us-east-1")
        let request = SigningRequest(
            method: "GET", path: "/test.txt",
            headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")],
            payloadHash: SigV4Signer.emptyPayloadHash)
        let (_, signature) = signer.signedHeaders(for: request, credentials: credentials, date: date)
        #expect(signature.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        let query = signer.presignedQuery(
            method: "GET", path: "/test.txt", host: "examplebucket.s3.amazonaws.com", credentials: credentials, date: date,
            expires: 86400)
        #expect(query.hasSuffix("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"))
        #expect(query.contains("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"))
    }

    /// Upload URLs sign the headers the uploader must send: the signature is the suite-checked
    /// header signature of a request carrying exactly them, so S3 refuses other values.
    @Test func presignedURLsSignTheHeadersTheyRequire() throws {
        let signer = SigV4Signer(service: "s3", region: "us-east-1")
        let credentials = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        let date = Date(timeIntervalSince1970: 1_369_353_600)
        let required = [("Content-Type", "image/png"), ("If-None-Match", "*")]
        let query = signer.presignedQuery(
            method: "PUT", path: "/uploads/a/b", host: "bucket.s3.amazonaws.com", credentials: credentials, date: date, expires: 900,
            signedHeaders: required)
        #expect(query.contains("X-Amz-SignedHeaders=content-type%3Bhost%3Bif-none-match"))
        #expect(query.contains("X-Amz-Expires=900"))
        let unsignedPart = try #require(query.components(separatedBy: "&X-Amz-Signature=").first)
        let signature = try #require(query.components(separatedBy: "&X-Amz-Signature=").last)
        let expected = signer.sign(
            SigningRequest(
                method: "PUT", path: "/uploads/a/b", query: unsignedPart,
                headers: [("host", "bucket.s3.amazonaws.com"), ("content-type", "image/png"), ("if-none-match", "*")],
                payloadHash: SigV4Signer.unsignedPayload),
            credentials: credentials, timestamp: "20130524T000000Z")
        #expect(signature == expected.signature)
        let hostOnly = signer.presignedQuery(
            method: "PUT", path: "/uploads/a/b", host: "bucket.s3.amazonaws.com", credentials: credentials, date: date, expires: 900)
        #expect(!hostOnly.hasSuffix(signature))
    }

    @Test func s3PathsAreSignedAsSentOthersNormalised() {
        let s3 = SigV4Signer(service: "s3", region: "us-east-1")
        let sqs = SigV4Signer(service: "sqs", region: "us-east-1")
        #expect(s3.canonicalPath("/bucket/my-object//example//photo.user") == "/bucket/my-object//example//photo.user")
        #expect(sqs.canonicalPath("/a//b/../c") == "/a/c")
        #expect(sqs.canonicalPath("/a%20b") == "/a%2520b")
    }
}

/// A request in the suite's `.req` format: request line, headers (continuation lines start with
/// whitespace), a blank line, the body.
struct RawHTTPRequest {
    var method: String
    var path: String
    var query: String
    var headers: [(String, String)] = []
    var body: String

    init(_ text: String) throws {
        var lines = text.components(separatedBy: "\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        method = String(requestLine.first ?? "GET")
        // The target may contain spaces (get-space): everything between the method and " HTTP/1.1".
        let target = requestLine.dropFirst().dropLast().joined(separator: " ")
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(parts[0])
        query = parts.count > 1 ? String(parts[1]) : ""
        var bodyLines: [String] = []
        var inBody = false
        for line in lines {
            if inBody {
                bodyLines.append(line)
            } else if line.isEmpty {
                inBody = true
            } else if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].1 += "\n" + line
            } else if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        body = bodyLines.joined(separator: "\n")
    }
}
