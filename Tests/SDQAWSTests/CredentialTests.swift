import Foundation
import SDQAWS
import SDQTestSupport
import Testing

@Suite struct CredentialTests {
    @Test func environmentCredentials() async throws {
        let provider = EnvironmentCredentialProvider(variables: [
            "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "env-token",
        ])
        #expect(try await provider.credentials() == AWSCredentials(accessKeyID: "AKIAENV", secretAccessKey: "env-secret", sessionToken: "env-token"))
        await #expect(throws: AWSError.self) { try await EnvironmentCredentialProvider(variables: [:]).credentials() }
    }

    @Test func webIdentityAssumesTheRoleThroughSTS() async throws {
        let directory = TemporaryDirectory()
        let tokenFile = directory.url.appendingPathComponent("token")
        try "the-oidc-token\n".write(to: tokenFile, atomically: true, encoding: .utf8)
        try await LoopbackAWSServer.run { base, state in
            let chain = CredentialChain.standard(environment: AWSEnvironment([
                "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile.path, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/sdq",
                "AWS_ROLE_SESSION_NAME": "pod-1", "AWS_ENDPOINT_URL_STS": "\(base)/sts", "AWS_EC2_METADATA_DISABLED": "true",
            ]))
            let credentials = try await chain.credentials()
            #expect(credentials.accessKeyID == "ASIAWEBIDENTITY")
            #expect(credentials.secretAccessKey == "web-secret")
            #expect(credentials.sessionToken == "web-session")
            #expect(credentials.expiration == ISO8601DateFormatter().date(from: LoopbackAWSServer.expiration))
            let form = await state.requests.first?.body ?? ""
            #expect(form.contains("RoleSessionName=pod-1"))
            // Cached: a second call does not ask STS again.
            _ = try await chain.credentials()
            #expect(await state.requests.count == 1)
        }
    }

    @Test func webIdentityErrorsCarryTheSTSCode() async throws {
        let directory = TemporaryDirectory()
        let tokenFile = directory.url.appendingPathComponent("token")
        try "forged".write(to: tokenFile, atomically: true, encoding: .utf8)
        try await LoopbackAWSServer.run { base, _ in
            let provider = WebIdentityCredentialProvider(
                tokenFile: tokenFile.path, roleARN: "arn:aws:iam::123456789012:role/sdq", sessionName: nil,
                stsEndpoint: URL(string: "\(base)/sts")!)
            do {
                _ = try await provider.credentials()
                Issue.record("expected an error")
            } catch let error as AWSError {
                #expect(error.code == "InvalidIdentityToken")
                #expect(error.requestID == "r-1")
            }
        }
    }

    @Test func containerCredentialsRelativeAndFullURIs() async throws {
        let directory = TemporaryDirectory()
        let tokenFile = directory.url.appendingPathComponent("eks-pod-identity-token")
        try "pod-identity-token".write(to: tokenFile, atomically: true, encoding: .utf8)
        try await LoopbackAWSServer.run { base, state in
            let ecs = try #require(ContainerCredentialProvider.fromEnvironment(
                ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/task-1"], ecsHost: base))
            let ecsKey = try await ecs.credentials().accessKeyID
            #expect(ecsKey == "ASIACONTAINER1")
            let eks = try #require(ContainerCredentialProvider.fromEnvironment([
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(base)/v2/credentials/pod", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile.path,
            ]))
            let credentials = try await eks.credentials()
            #expect(credentials.sessionToken == "container-token")
            #expect(await state.requests.last?.headers["authorization"] == "pod-identity-token")
        }
    }

    @Test func imdsV2UsesASessionToken() async throws {
        try await LoopbackAWSServer.run { base, _ in
            let credentials = try await IMDSCredentialProvider(endpoint: base).credentials()
            #expect(credentials == AWSCredentials(
                accessKeyID: "ASIAIMDS", secretAccessKey: "imds-secret", sessionToken: "imds-token",
                expiration: ISO8601DateFormatter().date(from: LoopbackAWSServer.expiration)))
        }
    }

    @Test func theChainTakesTheFirstSourceThatAnswersAndRefreshesBeforeExpiry() async throws {
        try await LoopbackAWSServer.run { base, state in
            // No environment keys, no web identity: the container source answers; IMDS is never asked.
            let chain = CredentialChain.standard(environment: AWSEnvironment([
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(base)/v2/credentials/task", "AWS_EC2_METADATA_SERVICE_ENDPOINT": base,
            ]))
            // The first answer expires in 60 s, inside the 5-minute refresh margin: the next call refreshes.
            let first = try await chain.credentials().accessKeyID
            let second = try await chain.credentials().accessKeyID
            let third = try await chain.credentials().accessKeyID
            #expect([first, second, third] == ["ASIACONTAINER1", "ASIACONTAINER2", "ASIACONTAINER2"])
            #expect(await state.requests.allSatisfy { $0.path.hasPrefix("/v2/credentials") })

            let environmentFirst = CredentialChain.standard(environment: AWSEnvironment([
                "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(base)/v2/credentials/x",
            ]))
            let fromEnvironment = try await environmentFirst.credentials().accessKeyID
            #expect(fromEnvironment == "AKIAENV")
        }
    }

    @Test func noSourceIsAClearError() async throws {
        let chain = CredentialChain.standard(environment: AWSEnvironment(["AWS_EC2_METADATA_DISABLED": "true"]))
        do {
            _ = try await chain.credentials()
            Issue.record("expected an error")
        } catch {
            #expect(error.code == "CredentialsError")
            #expect(error.message.contains("environment"))
        }
    }
}

@Suite struct RetryAndErrorTests {
    static func client(_ base: String) -> AWSHTTPClient {
        var client = AWSHTTPClient(
            environment: AWSEnvironment(["AWS_ENDPOINT_URL": base, "AWS_MAX_ATTEMPTS": "4"]),
            credentials: StaticCredentialProvider(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret")))
        client.baseDelay = .milliseconds(5)
        return client
    }

    @Test func serverErrorsAndThrottlingAreRetried() async throws {
        try await LoopbackAWSServer.run { base, state in
            await state.script([
                (500, [:], #"{"__type":"InternalFailure","message":"oops"}"#),
                (400, [:], #"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}"#),
                (200, [:], #"{"Item":{"id":{"S":"t1"}}}"#),
            ])
            let response = try await Self.client(base).json(service: "dynamodb", target: "DynamoDB_20120810.GetItem", ["TableName": "t"])
            #expect(response["Item"]?.objectValue != nil)
            let requests = await state.requests
            #expect(requests.count == 3)
            #expect(requests.allSatisfy { $0.headers["authorization"]?.hasPrefix("AWS4-HMAC-SHA256 Credential=AKID/") == true })
            #expect(requests.first?.headers["x-amz-target"] == "DynamoDB_20120810.GetItem")
        }
    }

    @Test func otherErrorsSurfaceAtOnceWithCodeAndRequestID() async throws {
        try await LoopbackAWSServer.run { base, state in
            await state.script([
                (400, ["x-amzn-RequestId": "req-42"], #"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#)
            ])
            do {
                _ = try await Self.client(base).json(service: "dynamodb", target: "DynamoDB_20120810.PutItem", [:])
                Issue.record("expected an error")
            } catch let error as AWSError {
                #expect(error.code == "ConditionalCheckFailedException")
                #expect(error.requestID == "req-42")
                #expect(error.statusCode == 400)
                #expect(!error.isRetryable)
            }
            #expect(await state.requests.count == 1)
        }
    }

    @Test func aCallPastItsDeadlineSendsNothingAndRetriesStopAtIt() async throws {
        try await LoopbackAWSServer.run { base, state in
            await state.script(Array(repeating: (503, [:], #"{"__type":"ServiceUnavailable","message":"down"}"#), count: 10))
            var client = Self.client(base)
            client.baseDelay = .seconds(5)
            client.maxDelay = .seconds(5)
            let late = ContinuousClock.now.advanced(by: .milliseconds(-1))
            await #expect(throws: AWSError(code: "DeadlineExceeded", message: "the caller's deadline passed before sqs answered")) {
                try await AWSCallDeadline.$current.withValue(late) {
                    _ = try await client.json(service: "sqs", target: "AmazonSQS.ReceiveMessage", [:])
                }
            }
            #expect(await state.requests.isEmpty)
            // Without a deadline four attempts sleep up to 15 s of backoff; with 1 s left the call
            // sleeps only where the next attempt can still start in time, then gives up.
            let started = ContinuousClock.now
            await #expect(throws: AWSError.self) {
                try await AWSCallDeadline.$current.withValue(ContinuousClock.now.advanced(by: .seconds(1))) {
                    _ = try await client.json(service: "sqs", target: "AmazonSQS.ReceiveMessage", [:])
                }
            }
            #expect(ContinuousClock.now - started < .seconds(4))
            #expect(await state.requests.count >= 1)
        }
    }

    @Test func retriesStopAfterMaxAttempts() async throws {
        try await LoopbackAWSServer.run { base, state in
            await state.script(Array(repeating: (503, [:], #"{"__type":"ServiceUnavailable","message":"down"}"#), count: 10))
            await #expect(throws: AWSError.self) {
                _ = try await Self.client(base).json(service: "sqs", target: "AmazonSQS.ReceiveMessage", [:])
            }
            #expect(await state.requests.count == 4)
        }
    }
}
