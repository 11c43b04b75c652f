import Foundation
import SDQPlatform
import SDQTestSupport
import Testing

/// ``RuntimeSelection``: the pool decides; `SDQ_RUNTIME`/`SDQ_RUNTIME_URL` build the default pool
/// without a pools file and may only agree with one.
@Suite struct RuntimeSelectionTests {
    let directory = TemporaryDirectory()

    func configuration(_ environment: [String: String], poolsYAML: String? = nil) throws -> SDQConfiguration {
        var environment = environment
        if let poolsYAML {
            let file = directory.url.appendingPathComponent("pools-\(UUID().uuidString).yaml")
            try poolsYAML.write(to: file, atomically: true, encoding: .utf8)
            environment["SDQ_POOLS_FILE"] = file.path
        }
        return try SDQConfiguration.fromEnvironment(environment)
    }

    func select(_ configuration: SDQConfiguration, pool name: String? = nil) throws -> RuntimeSelection {
        let pools = try PoolConfiguration.load(for: configuration)
        let pool = try #require(name.map { pools.pool(named: $0) } ?? pools.defaultPool)
        return try RuntimeSelection.resolve(pool: pool, configuration: configuration, isTarget: pool.name == pools.defaultPool.name)
    }

    func error(_ body: () throws -> Void) -> ConfigurationError? {
        do { try body() } catch let error as ConfigurationError { return error } catch { return nil }
        return nil
    }

    @Test func nothingSetIsTheBuiltInEmulator() throws {
        let configuration = try configuration([:])
        #expect(try select(configuration) == RuntimeSelection(runtime: "emulator", url: nil))
        #expect(try PoolConfiguration.load(for: configuration).defaultPool.models == [PoolConfiguration.emulatorModel])
    }

    @Test func withoutAPoolsFileTheEnvironmentIsTheDefaultPool() throws {
        let configuration = try configuration(["SDQ_RUNTIME": "sdwebui", "SDQ_RUNTIME_URL": "http://127.0.0.1:7860"])
        let pools = try PoolConfiguration.load(for: configuration)
        #expect(pools.pools.map(\.name) == ["default"])
        #expect(pools.defaultPool.runtime == "sdwebui")
        #expect(pools.defaultPool.models == [PoolConfiguration.runtimeDefaultModel])
        #expect(try select(configuration) == RuntimeSelection(runtime: "sdwebui", url: "http://127.0.0.1:7860"))
    }

    @Test func anHTTPRuntimeWithoutAURLRefusesToStart() throws {
        let missing = error { _ = try select(try configuration(["SDQ_RUNTIME": "comfyui"])) }
        #expect(missing?.field == "SDQ_RUNTIME_URL")
        let fromFile = error {
            _ = try select(try configuration([:], poolsYAML: "pools: [{name: a, runtime: sdwebui, models: [m]}]"))
        }
        #expect(fromFile?.field == "runtime_url")
        #expect(fromFile?.message.contains("SDQ_RUNTIME_URL") == true)
    }

    @Test func aURLForTheEmulatorIsRefusedNotIgnored() throws {
        let envOnly = error { _ = try PoolConfiguration.load(for: try configuration(["SDQ_RUNTIME_URL": "http://127.0.0.1:7860"])) }
        #expect(envOnly?.field == "SDQ_RUNTIME_URL")
        let withFile = error {
            _ = try select(try configuration(
                ["SDQ_RUNTIME_URL": "http://127.0.0.1:7860"], poolsYAML: "pools: [{name: default, runtime: emulator, models: [emulator-v1]}]"))
        }
        #expect(withFile?.field == "SDQ_RUNTIME_URL")
        let inFile = error {
            _ = try PoolConfiguration.parse(yaml: "pools: [{name: default, runtime: emulator, models: [e], runtime_url: 'http://x:1'}]")
        }
        #expect(inFile?.field == "pools[0].runtime_url")
    }

    @Test func theEnvironmentMayRepeatOrFillThePoolsFileButNotContradictIt() throws {
        let yaml = """
            pools:
              - {name: sdxl, runtime: sdwebui, models: [sd_xl_base_1.0]}
              - {name: comfy, runtime: comfyui, models: [flux1-schnell], runtime_url: "http://comfy:8188"}
            """
        // Repeat and fill (a sidecar): the pool's runtime, the URL from the environment.
        let sidecar = try configuration(["SDQ_RUNTIME": "sdwebui", "SDQ_RUNTIME_URL": "http://127.0.0.1:7860"], poolsYAML: yaml)
        #expect(try select(sidecar, pool: "sdxl") == RuntimeSelection(runtime: "sdwebui", url: "http://127.0.0.1:7860"))
        // The file's own URL for a pool the environment does not target.
        let pools = try PoolConfiguration.load(for: sidecar)
        let comfy = try #require(pools.pool(named: "comfy"))
        #expect(try RuntimeSelection.resolve(pool: comfy, configuration: sidecar, isTarget: false).url == "http://comfy:8188")
        // Contradictions name both settings.
        let runtime = error { _ = try RuntimeSelection.resolve(pool: comfy, configuration: sidecar, isTarget: true) }
        #expect(runtime?.field == "SDQ_RUNTIME")
        #expect(runtime?.message.contains("SDQ_RUNTIME=sdwebui") == true)
        #expect(runtime?.message.contains("pool comfy") == true && runtime?.message.contains("comfyui") == true)
        let url = try configuration(["SDQ_RUNTIME_URL": "http://127.0.0.1:8188"], poolsYAML: yaml)
        let urlConflict = error { _ = try RuntimeSelection.resolve(pool: comfy, configuration: url, isTarget: true) }
        #expect(urlConflict?.field == "SDQ_RUNTIME_URL")
        #expect(urlConflict?.message.contains("http://comfy:8188") == true)
    }

    @Test func theDeploymentManifestsAgreeWithTheRule() throws {
        // deploy/pools.yaml with each worker's environment as the ECS and EKS manifests set it.
        let root = fixtureURL("").deletingLastPathComponent().deletingLastPathComponent()
        let file = root.appendingPathComponent("deploy/pools.yaml").path
        for (pool, runtime, url) in [("sdxl", "sdwebui", "http://127.0.0.1:7860"), ("comfy", "comfyui", "http://127.0.0.1:8188")] {
            let configuration = try SDQConfiguration.fromEnvironment([
                "SDQ_POOLS_FILE": file, "SDQ_POOL": pool, "SDQ_RUNTIME": runtime, "SDQ_RUNTIME_URL": url,
            ])
            let spec = try #require(try PoolConfiguration.load(for: configuration).pool(named: pool))
            #expect(try RuntimeSelection.resolve(pool: spec, configuration: configuration, isTarget: true)
                == RuntimeSelection(runtime: runtime, url: url))
        }
    }
}
