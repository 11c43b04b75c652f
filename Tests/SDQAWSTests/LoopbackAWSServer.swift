import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SDQTestSupport

/// A loopback test double for the AWS endpoints the credential chain and the clients talk to,
/// written from their published formats: STS `AssumeRoleWithWebIdentity` (Query, XML answer),
/// the ECS/EKS container credentials endpoint (JSON), EC2 IMDSv2 (token, role, JSON credentials)
/// and a JSON-protocol service whose answers a test scripts (for retries and errors).
actor LoopbackAWSState {
    var requests: [(method: String, path: String, headers: [String: String], body: String)] = []
    var scripted: [(status: Int, headers: [String: String], body: String)] = []
    var imdsToken = "imds-token-\(UUID().uuidString)"
    var credentialCalls = 0

    func record(_ method: String, _ path: String, _ headers: [String: String], _ body: String) {
        requests.append((method, path, headers, body))
    }
    func script(_ answers: [(Int, [String: String], String)]) { scripted = answers.map { ($0.0, $0.1, $0.2) } }
    func nextScripted() -> (status: Int, headers: [String: String], body: String)? {
        scripted.isEmpty ? nil : scripted.removeFirst()
    }
    func countCredentialCall() -> Int {
        credentialCalls += 1
        return credentialCalls
    }
}

struct LoopbackAWSServer {
    static let expiration = "2099-01-01T00:00:00Z"

    /// Runs the server while `body` runs; `body` gets the base URL and the state.
    static func run<T: Sendable>(_ body: @Sendable (String, LoopbackAWSState) async throws -> T) async throws -> T {
        let state = LoopbackAWSState()
        let router = Router()

        router.post("/sts") { request, _ -> Response in
            var request = request
            let form = String(buffer: try await request.collectBody(upTo: 1 << 20))
            await state.record("POST", "/sts", [:], form)
            guard form.contains("Action=AssumeRoleWithWebIdentity"), form.contains("WebIdentityToken=the-oidc-token"),
                form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fsdq")
            else {
                return xml(400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad token</Message></Error><RequestId>r-1</RequestId></ErrorResponse>")
            }
            return xml(200, """
                <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>\
                <Credentials><AccessKeyId>ASIAWEBIDENTITY</AccessKeyId><SecretAccessKey>web-secret</SecretAccessKey>\
                <SessionToken>web-session</SessionToken><Expiration>\(expiration)</Expiration></Credentials>\
                </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>
                """)
        }
        router.get("/v2/credentials/{id}") { request, _ -> Response in
            await state.record("GET", request.uri.path, ["authorization": request.headers[.authorization] ?? ""], "")
            let calls = await state.countCredentialCall()
            if let auth = request.headers[.authorization], auth != "pod-identity-token" { return json(401, "{}") }
            // Short-lived on the first call, to exercise refresh before expiry.
            let expires = calls == 1 ? ISO8601DateFormatter().string(from: Date().addingTimeInterval(60)) : expiration
            return json(200, #"{"AccessKeyId":"ASIACONTAINER\#(calls)","SecretAccessKey":"container-secret","Token":"container-token","Expiration":"\#(expires)"}"#)
        }
        router.put("/latest/api/token") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token-ttl-seconds")!] != nil else { return json(400, "{}") }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: await state.imdsToken)))
        }
        router.get("/latest/meta-data/iam/security-credentials/") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == (await state.imdsToken) else { return json(401, "{}") }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "sdq-node-role\n")))
        }
        router.get("/latest/meta-data/iam/security-credentials/sdq-node-role") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == (await state.imdsToken) else { return json(401, "{}") }
            return json(200, #"{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-token","Expiration":"\#(expiration)"}"#)
        }
        router.post("/") { request, _ -> Response in
            var request = request
            let body = String(buffer: try await request.collectBody(upTo: 1 << 20))
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            await state.record("POST", "/", headers, body)
            guard let answer = await state.nextScripted() else { return json(200, "{}") }
            var fields = HTTPFields()
            fields[.contentType] = "application/x-amz-json-1.0"
            for (name, value) in answer.headers { fields[HTTPField.Name(name)!] = value }
            return Response(status: .init(code: answer.status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
        }

        return try await withLoopbackServer(router) { port in try await body("http://127.0.0.1:\(port)", state) }
    }

    static func json(_ status: Int, _ text: String) -> Response {
        Response(status: .init(code: status), headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    static func xml(_ status: Int, _ text: String) -> Response {
        Response(status: .init(code: status), headers: [.contentType: "text/xml"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
