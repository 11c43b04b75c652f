import Foundation
import SDQPlatform
import Testing
import Yams

/// The SAM template's alarms and dashboard watch metrics that really exist: sdq's own as the code
/// records them (`SDQMetrics`) and the collector's EMF exporter publishes them (namespace and
/// dimension sets of `docker/otel-collector/config-aws.yaml`), AWS's own for resources of the
/// template, and metrics its own metric filters make. And its HTTP API routes every operation of
/// `docs/openapi.yaml` to the function.
@Suite struct ObservabilityTests {
    static let root = DeploymentNamesTests.root

    /// `sdq_*` metric → its dimension names, from the `label:`/`dimensions:` pairs of SDQMetrics.
    static func recordedMetrics() throws -> [String: Set<String>] {
        let source = try String(contentsOf: root.appendingPathComponent("Shared/Transport/SDQMetrics.swift"), encoding: .utf8)
        let pattern = try NSRegularExpression(pattern: #"label: "(sdq_[a-z0-9_]+)", dimensions: \[([^\]]*)\]"#)
        var metrics: [String: Set<String>] = [:]
        for match in pattern.matches(in: source, range: NSRange(source.startIndex..., in: source)) {
            let name = String(source[Range(match.range(at: 1), in: source)!])
            let list = String(source[Range(match.range(at: 2), in: source)!])
            let keys = try NSRegularExpression(pattern: #"\("([a-z_]+)","#).matches(in: list, range: NSRange(list.startIndex..., in: list))
                .map { String(list[Range($0.range(at: 1), in: list)!]) }
            metrics[name, default: []].formUnion(keys)
        }
        return metrics
    }

    /// The EMF exporter's namespace and, per metric name, the dimension sets it publishes (a
    /// declared set is published when the metric has every dimension in it).
    static func published(_ recorded: [String: Set<String>]) throws -> (namespace: String, sets: [String: [Set<String>]]) {
        let config = try DeploymentNamesTests.yaml("docker/otel-collector/config-aws.yaml")
        let emf = try #require((config["exporters"] as? [String: Any])?["awsemf"] as? [String: Any])
        let namespace = try #require(emf["namespace"] as? String)
        var sets: [String: [Set<String>]] = [:]
        for declaration in emf["metric_declarations"] as? [[String: Any]] ?? [] {
            let selectors = (declaration["metric_name_selectors"] as? [String] ?? []).compactMap { try? NSRegularExpression(pattern: $0) }
            let dimensionSets = (declaration["dimensions"] as? [[String]] ?? []).map(Set.init)
            for (name, keys) in recorded
            where selectors.contains(where: { $0.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil }) {
                sets[name, default: []] += dimensionSets.filter { $0.isSubset(of: keys) }
            }
        }
        return (namespace, sets)
    }

    static let sqsMetrics: Set<String> = [
        "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
        "ApproximateAgeOfOldestMessage", "NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted",
        "NumberOfEmptyReceives", "SentMessageSize",
    ]
    static let lambdaMetrics: Set<String> = ["Errors", "Throttles", "Invocations", "Duration", "ConcurrentExecutions"]

    /// One metric an alarm or a widget names: namespace, name, dimensions (name → a value, which
    /// for resources is the resource's logical id).
    struct MetricRef: CustomStringConvertible {
        var namespace: String
        var name: String
        var dimensions: [String: String]
        var description: String { "\(namespace)/\(name)\(dimensions)" }
    }

    /// The logical id a `{"Fn::GetAtt": [X, QueueName]}`, `{"Ref": X}` or `${X.QueueName}` names.
    static func logicalID(_ value: Any?) -> String? {
        if let attribute = (value as? [String: Any])?["Fn::GetAtt"] as? [Any] { return attribute.first as? String }
        if let ref = (value as? [String: Any])?["Ref"] as? String { return ref }
        if let text = value as? String, text.hasPrefix("${"), text.hasSuffix("}") {
            return String(text.dropFirst(2).dropLast().split(separator: ".").first ?? "")
        }
        return value as? String
    }

    static func refs(inAlarm properties: [String: Any]) -> [MetricRef] {
        func ref(_ metric: [String: Any]) -> MetricRef {
            var dimensions: [String: String] = [:]
            for dimension in metric["Dimensions"] as? [[String: Any]] ?? [] {
                if let name = dimension["Name"] as? String { dimensions[name] = logicalID(dimension["Value"]) ?? "?" }
            }
            return MetricRef(namespace: metric["Namespace"] as? String ?? "", name: metric["MetricName"] as? String ?? "", dimensions: dimensions)
        }
        if properties["MetricName"] != nil { return [ref(properties)] }
        return (properties["Metrics"] as? [[String: Any]] ?? []).compactMap { query in
            ((query["MetricStat"] as? [String: Any])?["Metric"] as? [String: Any]).map(ref)
        }
    }

    static func refs(inDashboard body: String) throws -> (metrics: [MetricRef], alarms: [String]) {
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        var metrics: [MetricRef] = []
        var alarms: [String] = []
        for widget in json["widgets"] as? [[String: Any]] ?? [] {
            let properties = widget["properties"] as? [String: Any] ?? [:]
            alarms += (properties["alarms"] as? [String] ?? []).compactMap { logicalID($0) }
            for row in properties["metrics"] as? [[Any]] ?? [] {
                let strings = row.compactMap { $0 as? String }
                guard strings.count >= 2 else { continue }
                var dimensions: [String: String] = [:]
                var index = 2
                while index + 1 < strings.count {
                    dimensions[strings[index]] = logicalID(strings[index + 1])
                    index += 2
                }
                metrics.append(MetricRef(namespace: strings[0], name: strings[1], dimensions: dimensions))
            }
        }
        return (metrics, alarms)
    }

    @Test func everyAlarmAndWidgetNamesAMetricThatIsPublished() throws {
        let recorded = try Self.recordedMetrics()
        #expect(recorded["sdq_gpu_busy_fraction"] == ["pool"] && recorded["sdq_backlog_messages"] == ["pool", "lane", "state"])
        let (namespace, published) = try Self.published(recorded)
        let template = try DeploymentNamesTests.yaml("deploy/sam/template.yaml")
        let resources = template["Resources"] as? [String: [String: Any]] ?? [:]
        func type(_ id: String) -> String? { resources[id]?["Type"] as? String }
        let filtered = Set(
            resources.values.filter { $0["Type"] as? String == "AWS::Logs::MetricFilter" }
                .flatMap { ($0["Properties"] as? [String: Any])?["MetricTransformations"] as? [[String: Any]] ?? [] }
                .filter { $0["MetricNamespace"] as? String == namespace }.compactMap { $0["MetricName"] as? String })
        #expect(filtered == ["sdq_api_429_total"])

        func check(_ ref: MetricRef, in owner: String) {
            switch ref.namespace {
            case namespace where filtered.contains(ref.name):
                #expect(ref.dimensions.isEmpty, "\(owner): \(ref) is a metric filter's, without dimensions")
            case namespace:
                let sets = published[ref.name] ?? []
                #expect(!sets.isEmpty, "\(owner): \(ref.name) is not a metric sdq records and the collector publishes")
                #expect(sets.contains(Set(ref.dimensions.keys)), "\(owner): \(ref) has dimensions \(ref.dimensions.keys.sorted()), published: \(sets)")
            case "AWS/SQS":
                #expect(Self.sqsMetrics.contains(ref.name), "\(owner): \(ref)")
                #expect(ref.dimensions.count == 1 && type(ref.dimensions["QueueName"] ?? "") == "AWS::SQS::Queue", "\(owner): \(ref)")
            case "AWS/Lambda":
                #expect(Self.lambdaMetrics.contains(ref.name), "\(owner): \(ref)")
                #expect(ref.dimensions.count == 1 && type(ref.dimensions["FunctionName"] ?? "") == "AWS::Serverless::Function", "\(owner): \(ref)")
            default:
                Issue.record("\(owner): \(ref) is in no namespace this stack publishes to")
            }
        }

        var alarmed: [MetricRef] = []
        let alarms = resources.filter { $0.value["Type"] as? String == "AWS::CloudWatch::Alarm" }
        for (id, alarm) in alarms {
            let properties = alarm["Properties"] as? [String: Any] ?? [:]
            let refs = Self.refs(inAlarm: properties)
            #expect(!refs.isEmpty, "\(id) names no metric")
            for ref in refs { check(ref, in: id) }
            alarmed += refs
        }

        // What operators need watched is watched: every dead-letter queue, every pool lane's oldest
        // message, the API's errors, throttles and 429s, and each pool's GPU busy fraction, ready
        // workers and unreachable runtimes.
        let topology = try DeploymentNamesTests.topology()
        let queueIDs = resources.filter { $0.value["Type"] as? String == "AWS::SQS::Queue" }.reduce(into: [String: String]()) { ids, entry in
            if let name = DeploymentNamesTests.name((entry.value["Properties"] as? [String: Any])?["QueueName"]) { ids[name] = entry.key }
        }
        func watched(_ namespace: String, _ name: String, _ dimension: String, _ value: String) -> Bool {
            alarmed.contains { $0.namespace == namespace && $0.name == name && $0.dimensions[dimension] == value }
        }
        for dlq in topology.queues.compactMap(\.deadLetterQueue) {
            #expect(watched("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queueIDs[dlq] ?? dlq), "\(dlq) has no alarm")
        }
        let pools = try DeploymentNamesTests.pools()
        for pool in pools.pools {
            for lane in ResourceNames(stack: DeploymentNamesTests.stack).workerQueues(pool.name) {
                #expect(watched("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queueIDs[lane] ?? lane), "\(lane) has no age alarm")
            }
            for metric in ["sdq_gpu_busy_fraction", "sdq_worker_ready", "sdq_runtime_unreachable", "sdq_backlog_messages"] {
                #expect(watched(namespace, metric, "pool", pool.name), "pool \(pool.name) has no alarm on \(metric)")
            }
        }
        for metric in ["Errors", "Throttles"] { #expect(watched("AWS/Lambda", metric, "FunctionName", "ApiFunction")) }
        #expect(alarmed.contains { $0.name == "sdq_api_429_total" })

        // The dashboard: valid JSON once substituted, every metric published, every alarm ours.
        let dashboards = resources.values.filter { $0["Type"] as? String == "AWS::CloudWatch::Dashboard" }
        #expect(dashboards.count == 1)
        for dashboard in dashboards {
            let body = try #require(((dashboard["Properties"] as? [String: Any])?["DashboardBody"] as? [String: Any])?["Fn::Sub"] as? String)
            let (metrics, alarmIDs) = try Self.refs(inDashboard: body)
            #expect(metrics.count > 20)
            for ref in metrics { check(ref, in: "Dashboard") }
            #expect(Set(alarmIDs).isSubset(of: Set(alarms.keys)) && alarmIDs.count >= alarms.count - 2, "\(alarmIDs)")
        }
    }

    @Test func theHTTPAPIRoutesEveryOperation() throws {
        let openapi = try DeploymentNamesTests.yaml("docs/openapi.yaml")
        let template = try DeploymentNamesTests.yaml("deploy/sam/template.yaml")
        let function = try #require((template["Resources"] as? [String: Any])?["ApiFunction"] as? [String: Any])
        let events = ((function["Properties"] as? [String: Any])?["Events"] as? [String: Any] ?? [:]).values
            .compactMap { ($0 as? [String: Any])?["Properties"] as? [String: Any] }
        let routes = Set(events.compactMap { event -> String? in
            guard let method = event["Method"] as? String, let path = event["Path"] as? String else { return nil }
            return "\(method.uppercased()) \(path)"
        })
        // Objects are S3's on AWS (presigned URLs); the API serves them only on the embedded transport.
        let servedElsewhere: Set<String> = ["/v1/objects/{key}"]
        var operations: [String] = []
        for (path, item) in openapi["paths"] as? [String: Any] ?? [:] where !servedElsewhere.contains(path) {
            for method in (item as? [String: Any] ?? [:]).keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                operations.append("\(method.uppercased()) \(path)")
            }
        }
        #expect(operations.count >= 15)
        for operation in operations.sorted() {
            #expect(routes.contains(operation), "the HTTP API has no route for \(operation)")
        }
        #expect(routes.contains("GET /console") && routes.contains("GET /console/{proxy+}"))
    }
}
