import Foundation
import Testing
import Yams

/// The collector configurations in `docker/otel-collector/`: every component a pipeline names is
/// defined, OTLP/HTTP is received on 4318, and traces and metrics leave where the README says.
@Suite struct CollectorConfigurationTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docker/otel-collector")

    static func load(_ name: String) throws -> [String: Any] {
        let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    @Test(arguments: [
        ("config-aws.yaml", ["traces": "awsxray", "metrics": "awsemf"]),
        ("config-local.yaml", ["traces": "otlp/jaeger", "metrics": "prometheus"]),
    ])
    func pipelinesUseDefinedComponentsAndExportWhereDocumented(file: String, exporters: [String: String]) throws {
        let config = try Self.load(file)
        let service = try #require(config["service"] as? [String: Any])
        let pipelines = try #require(service["pipelines"] as? [String: [String: [String]]])
        #expect(Set(pipelines.keys) == ["traces", "metrics"])
        for (name, pipeline) in pipelines {
            for kind in ["receivers", "processors", "exporters"] {
                let defined = Set((config[kind] as? [String: Any])?.keys.map { $0 } ?? [])
                for component in pipeline[kind] ?? [] {
                    #expect(defined.contains(component), "\(file): pipeline \(name) names undefined \(kind) \(component)")
                }
            }
            #expect(pipeline["receivers"] == ["otlp"])
            #expect(pipeline["exporters"]?.contains(exporters[name] ?? "") == true, "\(file): \(name)")
        }
        let extensions = Set((config["extensions"] as? [String: Any])?.keys.map { $0 } ?? [])
        for name in service["extensions"] as? [String] ?? [] { #expect(extensions.contains(name)) }
        let http = ((config["receivers"] as? [String: Any])?["otlp"] as? [String: Any])?["protocols"] as? [String: Any]
        let endpoint = (http?["http"] as? [String: Any])?["endpoint"] as? String
        #expect(endpoint?.hasSuffix(":4318") == true)
    }
}
