import ApiLambda
import Foundation
import SDQPlatform
import Testing

/// Inputs kept from fuzzing (`Fuzz/Regressions/`, see `scripts/fuzz.sh`): each must be refused
/// with a clear 4xx error (request bodies) or parse to an event or nothing (Lambda events), never
/// crash.
@Suite struct FuzzRegressionTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Regressions")

    static func inputs(_ kind: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent(kind).path)) ?? []).sorted()
    }

    static func data(_ kind: String, _ name: String) throws -> Data {
        try Data(contentsOf: folder.appendingPathComponent(kind).appendingPathComponent(name))
    }

    @Test(arguments: inputs("api-request"))
    func requestBodiesAreRefusedWithAClearError(name: String) throws {
        let body = try Self.data("api-request", name)
        do {
            _ = try TaskSubmission.parse(body, limits: RequestLimits(), pools: .builtIn)
            Issue.record("\(name) was accepted as a v1 task")
        } catch {
            #expect((400..<500).contains(error.status) && !error.code.isEmpty, "\(name): \(error)")
        }
        do {
            _ = try TaskSubmission.parseReference(body, limits: RequestLimits(), pools: .builtIn)
            Issue.record("\(name) was accepted as a reference task")
        } catch {
            #expect((400..<500).contains(error.status) && !error.code.isEmpty, "\(name): \(error)")
        }
    }

    @Test(arguments: inputs("lambda-event"))
    func lambdaEventsParseOrAreRefused(name: String) throws {
        let data = try Self.data("lambda-event", name)
        if let event = LambdaEvent.parse(data) {
            #expect(!event.request.method.isEmpty)
            let answer = try JSONValue.parse(event.encode(APIResponse.json(200, Data("{}".utf8))))
            #expect(answer["statusCode"] != nil || answer["status"] != nil || answer["id"] != nil || answer["error"] == nil)
        }
    }

    @Test func thereAreRegressionInputs() {
        #expect(!Self.inputs("api-request").isEmpty && !Self.inputs("lambda-event").isEmpty && !Self.inputs("queue-message").isEmpty)
    }
}
