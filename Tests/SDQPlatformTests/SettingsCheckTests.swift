import Foundation
import SDQPlatform
import SDQTestSupport
import Testing

@Suite struct SettingsCheckTests {
    @Test func aTypoIsReportedWithTheNameItMeant() {
        let unknown = SettingsCheck.unknownVariables(in: [
            "SDQ_RUNTIME_ULR": "x", "SDQ_STACK": "prod", "SDQ_TEST_AWS_ENDPOINT": "x", "SDQ_REQUIRE_AWS_TESTS": "1",
            "HOME": "/root", "SDQ_COMPLETELY_DIFFERENT_THING": "1",
        ])
        #expect(unknown == [
            .init(name: "SDQ_COMPLETELY_DIFFERENT_THING", suggestion: nil),
            .init(name: "SDQ_RUNTIME_ULR", suggestion: "SDQ_RUNTIME_URL"),
        ])
    }

    /// Every `"SDQ_…"` name the services and the command line read is in the known list, and every
    /// known name is read somewhere: the list cannot drift from the code.
    @Test func theKnownListIsWhatTheSourcesRead() throws {
        let root = fixtureURL("").deletingLastPathComponent().deletingLastPathComponent()
        var read = Set<String>()
        let pattern = try Regex(#""(SDQ_[A-Z0-9_]+)""#)
        for folder in ["Shared", "Services"] {
            let walker = try #require(FileManager.default.enumerator(at: root.appendingPathComponent(folder), includingPropertiesForKeys: nil))
            for case let url as URL in walker where url.pathExtension == "swift" && url.lastPathComponent != "SettingsCheck.swift" {
                let text = try String(contentsOf: url, encoding: .utf8)
                for match in text.matches(of: pattern) { read.insert(String(text[match.range].dropFirst().dropLast())) }
            }
        }
        #expect(read.subtracting(SettingsCheck.knownVariables).isEmpty, "read but not known: \(read.subtracting(SettingsCheck.knownVariables))")
        #expect(SettingsCheck.knownVariables.subtracting(read).isEmpty, "known but never read: \(SettingsCheck.knownVariables.subtracting(read))")
    }
}
