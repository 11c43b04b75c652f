import Foundation
import SDQAWS
import SDQPlatform

/// `sdq doctor`'s checks of an AWS stack: every resource of the topology exists and matches the
/// configuration, and the identity it runs under can use each one.
///
/// Reads are attribute calls; writes are probes it removes again (an object under `doctor/`, an
/// item `doctor#…`). It never sends a message to a queue or publishes to a topic: those would be
/// work for the live services.
public struct AWSStackDoctor: Sendable {
    let transport: AWSTransport
    let topology: Topology
    /// Service name → role ARN, for `iam:SimulatePrincipalPolicy`.
    let roles: [String: String]

    public init(transport: AWSTransport, topology: Topology, roles: [String: String] = [:]) {
        self.transport = transport
        self.topology = topology
        self.roles = roles
    }

    static let initHint = "run `sdq aws init` (or deploy the stack's template) to create and update the stack's resources"

    /// Every check, in checklist order.
    public func run() async -> [StackCheck] {
        var checks: [StackCheck] = [await identity()]
        checks += await queues()
        checks += await topicsAndSubscriptions()
        checks += await storage()
        checks += await probes()
        checks += await simulations()
        return checks
    }

    /// Who the checks run as (`sts:GetCallerIdentity`).
    func identity() async -> StackCheck {
        do {
            let document = try await transport.sqs.client.query(service: "sts", action: "GetCallerIdentity", version: "2011-06-15", [])
            let arn = document.first("Arn")?.text ?? "unknown"
            return .ok("identity", arn, "credentials accepted", "account \(document.first("Account")?.text ?? "?")")
        } catch {
            return .failed(
                "identity", "credentials", "credentials accepted", "\(error)",
                fix: "give the process AWS credentials (environment, profile, web identity or the task/instance role) for the stack's account")
        }
    }

    // MARK: Queues

    func queues() async -> [StackCheck] {
        var checks: [StackCheck] = []
        let deadLetterNames = Set(topology.queues.compactMap(\.deadLetterQueue))
        for spec in topology.queues {
            let url: String
            do {
                url = try await transport.sqs.getQueueURL(name: spec.name)
            } catch {
                checks.append(.failed("queues", spec.name, "exists", Self.describe(error), fix: Self.initHint))
                continue
            }
            let attributes: [String: String]
            do {
                attributes = try await transport.sqs.getQueueAttributes(url: url)
            } catch {
                checks.append(
                    .failed("queues", spec.name, "readable", Self.describe(error), fix: Self.accessFix("sqs:GetQueueAttributes", on: spec.name)))
                continue
            }
            let visibility = AWSTransport.seconds(spec.visibilityTimeout)
            if attributes["VisibilityTimeout"] != String(visibility) {
                checks.append(
                    StackCheck(
                        area: "queues", subject: spec.name, check: "visibility timeout", status: .warning,
                        detail: "\(attributes["VisibilityTimeout"] ?? "unset") s, the configuration says \(visibility) s", fix: Self.initHint))
            }
            let visible = Int(attributes["ApproximateNumberOfMessages"] ?? "") ?? 0
            let inFlight = Int(attributes["ApproximateNumberOfMessagesNotVisible"] ?? "") ?? 0
            if let dlq = spec.deadLetterQueue {
                checks.append(redrive(spec, dlq: dlq, policy: attributes["RedrivePolicy"], visible: visible, inFlight: inFlight))
            } else if deadLetterNames.contains(spec.name) {
                checks.append(await deadLetters(spec.name, url: url, depth: visible + inFlight))
            } else {
                checks.append(.ok("queues", spec.name, "exists", "\(visible) waiting, \(inFlight) in flight"))
            }
        }
        return checks
    }

    /// The queue's redrive policy names its dead-letter queue with the configured receive count.
    func redrive(_ spec: QueueSpec, dlq: String, policy: String?, visible: Int, inFlight: Int) -> StackCheck {
        let check = "redrive to \(dlq)"
        guard let policy, let data = policy.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            return .failed(
                "queues", spec.name, check, "no redrive policy: a message that fails every time is received forever", fix: Self.initHint)
        }
        let target = object["deadLetterTargetArn"] as? String ?? ""
        let count = (object["maxReceiveCount"] as? Int) ?? Int(object["maxReceiveCount"] as? String ?? "") ?? 0
        guard target.hasSuffix(":" + dlq) else {
            return .failed("queues", spec.name, check, "the redrive policy sends to \(target), not \(dlq)", fix: Self.initHint)
        }
        guard count == spec.maxReceiveCount else {
            return StackCheck(
                area: "queues", subject: spec.name, check: check, status: .warning,
                detail: "maxReceiveCount is \(count), the configuration says \(spec.maxReceiveCount)", fix: Self.initHint)
        }
        return .ok("queues", spec.name, check, "after \(count) receives; \(visible) waiting, \(inFlight) in flight")
    }

    /// A dead-letter queue is empty; when it is not, its depth and its oldest message's age (from a
    /// look at up to ten messages, handed back at once).
    func deadLetters(_ name: String, url: String, depth: Int) async -> StackCheck {
        guard depth > 0 else { return .ok("queues", name, "dead letters", "empty") }
        var oldest = ""
        if let sample = try? await transport.sqs.receiveMessage(url: url, maxMessages: 10, waitSeconds: 0, visibilityTimeout: 5) {
            for message in sample { try? await transport.sqs.changeMessageVisibility(url: url, receiptHandle: message.receiptHandle, timeout: 0) }
            if let first = sample.compactMap({ $0.systemAttributes["SentTimestamp"].flatMap { Int($0) } }).min() {
                let age = max(0, Int(Date().timeIntervalSince1970 * 1000) - first) / 1000
                oldest = "; the oldest seen is \(Self.age(seconds: age)) old"
            }
        }
        return .failed(
            "queues", name, "dead letters", "\(depth) messages\(oldest)",
            fix: StackCheck.deadLetterFix)
    }

    // MARK: Topics and the subscription

    func topicsAndSubscriptions() async -> [StackCheck] {
        var checks: [StackCheck] = []
        var arns: [String: String] = [:]
        for topic in topology.topics {
            do {
                let arn = try await transport.resolver.topicARN(topic)
                _ = try await transport.sns.topicAttributes(topicARN: arn)
                arns[topic] = arn
                checks.append(.ok("topics", topic, "exists", arn))
            } catch {
                checks.append(.failed("topics", topic, "exists", Self.describe(error), fix: Self.initHint))
            }
        }
        for subscription in topology.subscriptions {
            let subject = "\(subscription.topic) → \(subscription.queue)"
            guard let topicARN = arns[subscription.topic] else { continue }
            do {
                let queueARN = try await transport.resolver.queueARN(subscription.queue)
                let found = try await transport.sns.listSubscriptions(topicARN: topicARN)
                    .first { $0.protocolName == "sqs" && $0.endpoint == queueARN }
                guard let found else {
                    checks.append(
                        .failed(
                            "topics", subject, "subscribed",
                            "\(subscription.topic) has no subscription for \(subscription.queue): submitted tasks go nowhere", fix: Self.initHint))
                    continue
                }
                let attributes = try await transport.sns.subscriptionAttributes(arn: found.arn)
                if attributes["RawMessageDelivery"] != "true" {
                    checks.append(
                        .failed(
                            "topics", subject, "raw delivery",
                            "RawMessageDelivery is \(attributes["RawMessageDelivery"] ?? "unset"): the dispatcher cannot read the wrapped messages",
                            fix: Self.initHint))
                    continue
                }
                let queueURL = try await transport.resolver.queueURL(subscription.queue)
                let policy = try await transport.sqs.getQueueAttributes(url: queueURL, names: ["Policy"])["Policy"] ?? ""
                if !policy.contains(topicARN) {
                    checks.append(
                        .failed(
                            "topics", subject, "queue policy", "\(subscription.queue)'s policy does not let \(subscription.topic) send to it",
                            fix: Self.initHint))
                    continue
                }
                checks.append(.ok("topics", subject, "subscribed", "raw delivery, the queue's policy admits the topic"))
            } catch {
                checks.append(.failed("topics", subject, "subscribed", Self.describe(error), fix: Self.initHint))
            }
        }
        return checks
    }

    // MARK: Bucket and table

    func storage() async -> [StackCheck] {
        guard let storage = topology.storage else { return [] }
        var checks: [StackCheck] = []
        let s3 = transport.s3, dynamo = transport.dynamo
        if let error = await s3.headBucket(storage.bucket) {
            checks.append(
                .failed(
                    "storage", storage.bucket, "bucket exists", Self.describe(error),
                    fix: error.statusCode == 403 ? Self.accessFix("s3:ListBucket", on: storage.bucket) : Self.initHint))
        } else {
            do {
                let rules = try await s3.lifecycleExpirations(bucket: storage.bucket)
                let missing = storage.expiringPrefixes.filter { prefix in
                    !rules.contains { $0.enabled && $0.prefix == prefix && $0.days == storage.expirationDays }
                }
                checks.append(
                    missing.isEmpty
                        ? .ok("storage", storage.bucket, "lifecycle", "\(storage.expiringPrefixes.joined(separator: ", ")) expire after \(storage.expirationDays) days")
                        : .failed(
                            "storage", storage.bucket, "lifecycle",
                            "no enabled rule expiring \(missing.joined(separator: ", ")) after \(storage.expirationDays) days: objects pile up",
                            fix: Self.initHint))
                if let algorithm = try await s3.defaultEncryption(bucket: storage.bucket) {
                    checks.append(.ok("storage", storage.bucket, "encryption", "default encryption \(algorithm)"))
                } else {
                    checks.append(
                        .failed(
                            "storage", storage.bucket, "encryption", "no default encryption",
                            fix: "turn on default encryption (SSE-S3 or SSE-KMS); `sdq aws init` sets SSE-S3"))
                }
            } catch {
                checks.append(.failed("storage", storage.bucket, "configuration readable", Self.describe(error), fix: Self.accessFix("s3:GetLifecycleConfiguration and s3:GetEncryptionConfiguration", on: storage.bucket)))
            }
        }
        do {
            guard let table = try await dynamo.describeTable(name: storage.table) else {
                checks.append(.failed("storage", storage.table, "table exists", "no such table", fix: Self.initHint))
                return checks
            }
            checks.append(
                table.status == "ACTIVE"
                    ? .ok("storage", storage.table, "table exists", "ACTIVE")
                    : .failed("storage", storage.table, "table exists", "status \(table.status)", fix: "wait for the table to become ACTIVE"))
            let index = AWSTaskStore.listIndex.name
            if let status = table.indexes[index] {
                checks.append(
                    status == "ACTIVE" || status.isEmpty
                        ? .ok("storage", storage.table, "index \(index)", "ACTIVE")
                        : StackCheck(area: "storage", subject: storage.table, check: "index \(index)", status: .warning, detail: "status \(status)", fix: "wait for the index to finish building"))
            } else {
                checks.append(
                    .failed("storage", storage.table, "index \(index)", "missing: task lists and usage cannot be read", fix: Self.initHint))
            }
            let ttl = try await dynamo.timeToLive(table: storage.table)
            checks.append(
                ttl.status == "ENABLED" && ttl.attribute == AWSTaskStore.ttlAttribute
                    ? .ok("storage", storage.table, "time to live", "on \(AWSTaskStore.ttlAttribute)")
                    : .failed(
                        "storage", storage.table, "time to live",
                        "TTL is \(ttl.status) on \(ttl.attribute ?? "no attribute"): records never expire", fix: Self.initHint))
        } catch {
            checks.append(.failed("storage", storage.table, "table readable", Self.describe(error), fix: Self.accessFix("dynamodb:DescribeTable and dynamodb:DescribeTimeToLive", on: storage.table)))
        }
        return checks
    }

    // MARK: Probes

    /// Writes and reads back an object under `doctor/` and an item `doctor#…`, then removes both.
    func probes() async -> [StackCheck] {
        guard let storage = topology.storage else { return [] }
        let token = UUID().uuidString.lowercased()
        var checks: [StackCheck] = []
        let key = "doctor/\(token)"
        do {
            try await transport.s3.putObject(bucket: storage.bucket, key: key, data: Data(token.utf8), contentType: "text/plain")
            let read = try await transport.s3.getObject(bucket: storage.bucket, key: key)
            try await transport.s3.deleteObject(bucket: storage.bucket, key: key)
            checks.append(
                read?.data == Data(token.utf8)
                    ? .ok("access", storage.bucket, "write, read, delete an object", key)
                    : .failed("access", storage.bucket, "write, read, delete an object", "the probe read back differently", fix: "check the bucket's policy and any object lambda in front of it"))
        } catch {
            checks.append(
                .failed("access", storage.bucket, "write, read, delete an object", Self.describe(error), fix: Self.accessFix("s3:PutObject, s3:GetObject and s3:DeleteObject", on: "\(storage.bucket)/*")))
        }
        let id = "doctor#\(token)"
        do {
            let expires = Int64(Date().timeIntervalSince1970) + 3600
            try await transport.dynamo.putItem(DynamoPut(table: storage.table, item: ["id": .string(id), AWSTaskStore.ttlAttribute: .int(expires)]))
            let read = try await transport.dynamo.getItem(table: storage.table, key: ["id": .string(id)])
            try await transport.dynamo.deleteItem(table: storage.table, key: ["id": .string(id)])
            checks.append(
                read != nil
                    ? .ok("access", storage.table, "write, read, delete an item", id)
                    : .failed("access", storage.table, "write, read, delete an item", "the probe was not read back", fix: "check the table's resource policy"))
        } catch {
            checks.append(
                .failed("access", storage.table, "write, read, delete an item", Self.describe(error), fix: Self.accessFix("dynamodb:PutItem, dynamodb:GetItem and dynamodb:DeleteItem", on: storage.table)))
        }
        return checks
    }

    // MARK: Policy simulation

    /// The actions each service's role needs.
    static let neededActions: [String: [String]] = [
        "api": ["sns:Publish", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "s3:PutObject", "s3:GetObject", "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"],
        "dispatcher": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"],
        "inference": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage", "sqs:GetQueueUrl", "s3:PutObject", "s3:GetObject", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
        "result-writer": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage", "sqs:GetQueueUrl", "sns:Publish", "s3:PutObject", "s3:GetObject", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
    ]

    /// `iam:SimulatePrincipalPolicy` for each `--role`: on AWS only (emulators have no simulator).
    func simulations() async -> [StackCheck] {
        guard !roles.isEmpty else { return [] }
        if transport.environment.customEndpoint(for: "iam") != nil {
            return roles.keys.sorted().map { service in
                StackCheck(
                    area: "access", subject: roles[service] ?? service, check: "\(service) role's policy", status: .skipped,
                    detail: "the endpoint is an emulator (AWS_ENDPOINT_URL); it has no policy simulator, so the role's policy is not checked here")
            }
        }
        var checks: [StackCheck] = []
        for service in roles.keys.sorted() {
            guard let arn = roles[service] else { continue }
            guard let actions = Self.neededActions[service] else {
                checks.append(
                    .failed(
                        "access", arn, "role's policy", "unknown service \(service)",
                        fix: "name one of \(Self.neededActions.keys.sorted().joined(separator: ", ")) in --role SERVICE=ARN"))
                continue
            }
            var parameters = [("PolicySourceArn", arn)]
            for (index, action) in actions.enumerated() { parameters.append(("ActionNames.member.\(index + 1)", action)) }
            do {
                let document = try await transport.sqs.client.query(service: "iam", action: "SimulatePrincipalPolicy", version: "2010-05-08", parameters)
                let denied = document.all("member").compactMap { result -> String? in
                    guard let action = result.child("EvalActionName"), let decision = result.child("EvalDecision") else { return nil }
                    return decision == "allowed" ? nil : "\(action) (\(decision))"
                }
                checks.append(
                    denied.isEmpty
                        ? .ok("access", arn, "\(service) role's policy", "allows all \(actions.count) actions \(service) needs")
                        : .failed("access", arn, "\(service) role's policy", "denies \(denied.joined(separator: ", "))", fix: "grant these actions on the stack's resources to \(arn)"))
            } catch {
                checks.append(.failed("access", arn, "\(service) role's policy", Self.describe(error), fix: "the identity running doctor needs iam:SimulatePrincipalPolicy"))
            }
        }
        return checks
    }

    // MARK: Wording

    static func describe(_ error: AWSError) -> String {
        switch error.code {
        case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist": "does not exist"
        case "NotFound", "NoSuchBucket": "does not exist"
        case "AccessDenied", "AccessDeniedException", "AuthorizationError": "access denied: \(error.message)"
        default: "\(error.code): \(error.message)"
        }
    }

    static func accessFix(_ actions: String, on resource: String) -> String {
        "allow \(actions) on \(resource) for the identity doctor runs as (and for the services' roles)"
    }

    static func age(seconds: Int) -> String {
        seconds < 120 ? "\(seconds) s" : seconds < 7200 ? "\(seconds / 60) min" : seconds < 172_800 ? "\(seconds / 3600) h" : "\(seconds / 86_400) days"
    }
}
