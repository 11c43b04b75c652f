@testable import ApiLambda
import Foundation
import SDQPlatform
import Testing

/// The console's files: compiled in from `Services/ApiLambda/Console`, served without a key, with
/// a content security policy on the page.
@Suite struct ConsoleTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Services/ApiLambda/Console").standardized

    @Test func theCompiledFilesAreTheSourcesAsTheyStand() throws {
        let names = try FileManager.default.subpathsOfDirectory(atPath: Self.sources.path)
            .filter { !$0.hasPrefix(".") }
            .filter { var directory: ObjCBool = false; _ = FileManager.default.fileExists(atPath: Self.sources.appendingPathComponent($0).path, isDirectory: &directory); return !directory.boolValue }
            .sorted()
        #expect(ConsoleAssets.names == names, "run scripts/gen-console-assets.py")
        let assets = ConsoleAssets(directory: nil)
        for name in names {
            let source = try Data(contentsOf: Self.sources.appendingPathComponent(name))
            #expect(assets.file(name)?.bytes == source, "\(name) differs from its source: run scripts/gen-console-assets.py")
        }
    }

    @Test func thePageIsServedWithoutAKeyAndWithItsPolicy() async throws {
        let harness = try await APIHandlerTests.Harness.make()
        let redirect = await harness.get("/console")
        #expect(redirect.status == 308 && redirect.headers["location"] == "/console/")
        let page = await harness.get("/console/")
        #expect(page.status == 200 && page.headers["content-type"] == "text/html; charset=utf-8")
        #expect(page.headers["content-security-policy"]?.contains("script-src 'self'") == true)
        #expect(String(decoding: page.body, as: UTF8.self).contains("console.js"))
        let script = await harness.get("/console/console.js")
        #expect(script.status == 200 && script.headers["content-type"] == "text/javascript; charset=utf-8")
        let etag = try #require(script.headers["etag"])
        #expect(await harness.get("/console/console.js", headers: ["if-none-match": etag]).status == 304)
        let missing = await harness.get("/console/../v1/tasks")
        #expect(missing.status == 404 || missing.status == 401)
        #expect(await harness.get("/console/nope.js").status == 404)
        #expect(await harness.handler.handle(APIRequest(method: "POST", path: "/console/")).status == 405)
    }
}
