import Foundation
import SDQAWS
import SDQAWSTransport
import SDQPlatform
import SDQTestSupport
import Testing

/// `sdq doctor` run as a user runs it, against moto: a healthy stack passes; a removed
/// dead-letter queue, a removed subscription, a denied permission and a backlog with no worker
/// are each named, with exit status 1.
@Suite(.enabled(if: AWSTestEnvironment.available, "needs moto (SDQ_TEST_AWS_ENDPOINT or moto_server)"))
struct DoctorTests {
    struct Report: Decodable {
        var status: String
        var checks: [StackCheck]
        func failed() -> [StackCheck] { checks.filter { $0.status == .failed } }
    }

    /// Runs `sdq doctor --json` for `stack` with `environment`; its exit status and report.
    static func doctor(stack: String, environment: [String: String]) async throws -> (Int32, Report) {
        let directory = TemporaryDirectory()
        let process = try SdqProcess.start(
            ["doctor", "--json"], environment: environment.merging(["SDQ_TRANSPORT": "aws", "SDQ_STACK": stack]) { $1 }, in: directory)
        let status = try #require(await process.waitForExit(timeout: .seconds(60)), "sdq doctor did not finish:\n\(process.log)")
        let log = process.log
        let json = try #require(log.firstIndex(of: "{").map { String(log[$0...]) }, "no JSON in:\n\(log)")
        return (status, try JSONDecoder().decode(Report.self, from: Data(json.utf8)))
    }

    static func client(_ variables: [String: String]) -> AWSHTTPClient {
        let environment = AWSEnvironment(variables)
        return AWSHTTPClient(
            environment: environment,
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyID: variables["AWS_ACCESS_KEY_ID"] ?? "", secretAccessKey: variables["AWS_SECRET_ACCESS_KEY"] ?? "")))
    }

    @Test func aHealthyStackPassesAndEachFaultIsNamed() async throws {
        let variables = AWSTestEnvironment.variables()
        let names = ResourceNames(stack: AWSTestEnvironment.uniqueStack())
        let transport = AWSTransport(environment: .init(variables), names: names, logger: testLogger())
        let context = StackContext(transport: transport, names: names, pools: .builtIn)
        try await transport.provision(context.topology)

        var (status, report) = try await Self.doctor(stack: names.stack, environment: variables)
        #expect(status == 0 && report.status == "ok", "\(report.failed())")
        let subjects = Set(report.checks.map(\.subject))
        for queue in context.topology.queues { #expect(subjects.contains(queue.name), "\(queue.name) not checked") }
        #expect(report.checks.contains { $0.area == "access" && $0.subject == names.bucket && $0.status == .ok })
        #expect(report.checks.contains { $0.area == "fleet" && $0.subject == "default" && $0.detail.hasPrefix("scaled_to_zero") })

        // A dead-letter queue is removed.
        let http = Self.client(variables)
        let dlq = names.deadLetterQueue(of: names.poolQueue("default"))
        let dlqURL = try await SQSClient(client: http).getQueueURL(name: dlq)
        _ = try await http.json(service: "sqs", target: "AmazonSQS.DeleteQueue", ["QueueUrl": .string(dlqURL)], timeout: nil)
        (status, report) = try await Self.doctor(stack: names.stack, environment: variables)
        #expect(status == 1 && report.status == "failed")
        #expect(report.failed().map(\.subject) == [dlq], "\(report.failed())")
        #expect(report.failed().first?.fix?.contains("sdq aws init") == true)

        // Put back, then the subscription is removed.
        try await transport.provision(context.topology)
        let sns = SNSClient(client: http)
        let topicARN = try #require(report.checks.first { $0.subject == names.tasksTopic }?.detail)
        for subscription in try await sns.listSubscriptions(topicARN: topicARN) {
            _ = try await http.query(service: "sns", action: "Unsubscribe", version: "2010-03-31", [("SubscriptionArn", subscription.arn)])
        }
        (status, report) = try await Self.doctor(stack: names.stack, environment: variables)
        #expect(status == 1 && report.failed().map(\.subject) == ["\(names.tasksTopic) → \(names.dispatchQueue)"], "\(report.failed())")
        #expect(report.failed().first?.detail.contains("no subscription") == true)

        // Put back, then a task waits on the pool's lane with no worker.
        try await transport.provision(context.topology)
        try await transport.queue(named: names.poolQueue("default")).send(body: "x", attributes: [:])
        (status, report) = try await Self.doctor(stack: names.stack, environment: variables)
        #expect(status == 1 && report.failed().map(\.subject) == ["default"], "\(report.failed())")
        #expect(report.failed().first?.detail.hasPrefix("capacity_short") == true)
    }

    /// moto checking IAM (`INITIAL_NO_AUTH_ACTION_COUNT`): an identity denied `s3:PutObject` is
    /// told so by the object probe, and nothing else fails.
    @Test(.enabled(if: AWSTestEnvironment.motoInstalled, "needs moto_server"))
    func aDeniedPermissionIsNamed() async throws {
        let endpoint = try #require(await AWSTestEnvironment.startPrivateMoto(environment: ["INITIAL_NO_AUTH_ACTION_COUNT": "3"]))
        var variables = AWSTestEnvironment.variables(extra: ["AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "1"])
        let bootstrap = Self.client(variables.merging(["AWS_ACCESS_KEY_ID": "AKIDBOOT", "AWS_SECRET_ACCESS_KEY": "boot"]) { $1 })
        _ = try await bootstrap.query(service: "iam", action: "CreateUser", version: "2010-05-08", [("UserName", "operator")])
        let created = try await bootstrap.query(service: "iam", action: "CreateAccessKey", version: "2010-05-08", [("UserName", "operator")])
        variables["AWS_ACCESS_KEY_ID"] = try #require(created.first("AccessKeyId")?.text)
        variables["AWS_SECRET_ACCESS_KEY"] = try #require(created.first("SecretAccessKey")?.text)
        let policy = #"""
            {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},
            {"Effect":"Deny","Action":"s3:PutObject","Resource":"*"}]}
            """#
        _ = try await bootstrap.query(
            service: "iam", action: "PutUserPolicy", version: "2010-05-08", [("UserName", "operator"), ("PolicyName", "no-writes"), ("PolicyDocument", policy)])

        let names = ResourceNames(stack: AWSTestEnvironment.uniqueStack())
        let transport = AWSTransport(environment: .init(variables), names: names, logger: testLogger())
        try await transport.provision(StackContext(transport: transport, names: names, pools: .builtIn).topology)
        let (status, report) = try await Self.doctor(stack: names.stack, environment: variables)
        #expect(status == 1)
        let failed = report.failed()
        #expect(failed.map(\.subject) == [names.bucket] && failed.first?.area == "access", "\(failed)")
        #expect(failed.first?.detail.contains("access denied") == true, "\(failed)")
        #expect(failed.first?.fix?.contains("s3:PutObject") == true)
    }
}
