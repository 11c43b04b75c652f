import Foundation
import SDQMessages
import SDQPlatform
import Testing

@Suite struct ConfigurationTests {
    @Test func defaultsWithAnEmptyEnvironment() throws {
        let config = try SDQConfiguration.fromEnvironment([:])
        #expect(config.transport == .embedded)
        #expect(config.dataDirectory == "./.sdq")
        #expect(config.stack == "sdq")
        #expect(config.httpPort == 8080)
        #expect(config.apiKeys.isEmpty)
        #expect(config.runtime == nil)
        #expect(!config.webhookAllowPrivate)
    }

    @Test func readsTheFixedNames() throws {
        let config = try SDQConfiguration.fromEnvironment([
            "SDQ_TRANSPORT": "aws", "SDQ_DATA_DIR": "/data", "SDQ_STACK": "prod", "SDQ_HTTP_PORT": "9000",
            "SDQ_API_KEYS": "a, b,,", "SDQ_WEBHOOK_ALLOW_PRIVATE": "true", "LOG_LEVEL": "debug",
            "SDQ_RUNTIME": "sdwebui", "SDQ_RUNTIME_URL": "http://127.0.0.1:7860",
        ])
        #expect(config.transport == .aws)
        #expect(config.dataDirectory == "/data")
        #expect(config.names.dispatchQueue == "prod-dispatch")
        #expect(config.httpPort == 9000)
        #expect(config.apiKeys == ["a", "b"])
        #expect(config.webhookAllowPrivate)
        #expect(config.logLevel == .debug)
        #expect(config.runtimeURL == "http://127.0.0.1:7860")
    }

    @Test func rejectsBadValuesNamingTheVariable() {
        #expect(throws: ConfigurationError.self) { try SDQConfiguration.fromEnvironment(["SDQ_TRANSPORT": "carrier-pigeon"]) }
        do {
            _ = try SDQConfiguration.fromEnvironment(["SDQ_HTTP_PORT": "http"])
            Issue.record("expected an error")
        } catch {
            #expect(error.field == "SDQ_HTTP_PORT")
        }
    }

    /// The next generation waits in the runtime's queue unless `SDQ_RUNTIME_QUEUE_AHEAD=0`; any
    /// other value is refused, naming the variable.
    @Test func runtimeQueueAheadIsOnUnlessTurnedOff() throws {
        #expect(try SDQConfiguration.fromEnvironment([:]).runtimeQueueAhead)
        #expect(try !SDQConfiguration.fromEnvironment(["SDQ_RUNTIME_QUEUE_AHEAD": "0"]).runtimeQueueAhead)
        #expect(try SDQConfiguration.fromEnvironment(["SDQ_RUNTIME_QUEUE_AHEAD": "1"]).runtimeQueueAhead)
        do {
            _ = try SDQConfiguration.fromEnvironment(["SDQ_RUNTIME_QUEUE_AHEAD": "yes"])
            Issue.record("expected an error")
        } catch {
            #expect(error.field == "SDQ_RUNTIME_QUEUE_AHEAD")
        }
    }

    @Test func parsesPoolsYAML() throws {
        let config = try PoolConfiguration.parse(yaml: """
            pools:
              - name: sdxl
                runtime: sdwebui
                models: [sdxl-base-1.0, juggernaut-xl]
              - name: default
                runtime: emulator
                models: [emulator-v1]
            limits:
              max_width: 1024
            queues:
              max_receive_count: 7
            """)
        #expect(config.pools.map(\.name) == ["sdxl", "default"])
        #expect(config.pool(servingModel: "juggernaut-xl")?.name == "sdxl")
        #expect(config.defaultPool.name == "default")
        #expect(config.limits.maxWidth == 1024)
        #expect(config.limits.maxHeight == 2048)
        #expect(config.queues.maxReceiveCount == 7)
        let topology = Topology.standard(names: ResourceNames(stack: "s"), pools: config)
        #expect(topology.queues.map(\.name).contains("s-pool-sdxl-dlq"))
        #expect(topology.queues.first { $0.name == "s-pool-sdxl" }?.maxReceiveCount == 7)
    }

    @Test func rejectsInvalidPools() {
        let cases = [
            "pools: []",
            "pools: [{name: a, runtime: tensorflow, models: [m]}]",
            "pools: [{name: a, runtime: emulator, models: []}]",
            "pools: [{name: A_B, runtime: emulator, models: [m]}]",
            "pools: [{name: a, runtime: emulator, models: [m]}, {name: a, runtime: emulator, models: [n]}]",
            "not yaml: [",
        ]
        for yaml in cases {
            #expect(throws: ConfigurationError.self, "\(yaml)") { try PoolConfiguration.parse(yaml: yaml) }
        }
    }
}

@Suite struct MessageCodecTests {
    @Test func roundTripsWithAttributes() throws {
        var task = Sdq_V1_GenerationTask()
        task.id = "t1"
        task.parameters.prompt = "x"
        let encoded = MessageCodec.encode(task, attributes: [MessageAttribute.taskID: "t1"])
        #expect(encoded.attributes[MessageAttribute.schema] == "sdq.v1.GenerationTask")
        #expect(encoded.attributes[MessageAttribute.contentType] == "application/x-protobuf")
        #expect(encoded.attributes[MessageAttribute.taskID] == "t1")
        #expect(Data(base64Encoded: encoded.body) != nil)
        let decoded = try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: encoded.body, attributes: encoded.attributes)
        #expect(decoded == task)
    }

    @Test func refusesGarbageAndTheWrongSchema() {
        #expect(throws: MessageDecodingError.self) {
            try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: "%%% not base64", attributes: [:])
        }
        #expect(throws: MessageDecodingError.self) {
            try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: Data([0xFF, 0xFF, 0xFF]).base64EncodedString(), attributes: [:])
        }
        let result = MessageCodec.encode(Sdq_V1_TaskResult())
        #expect(throws: MessageDecodingError.self) {
            try MessageCodec.decode(Sdq_V1_GenerationTask.self, body: result.body, attributes: result.attributes)
        }
    }
}

@Suite struct TaskIDTests {
    @Test func idsAreWellFormedUniqueAndTimeOrdered() {
        let early = TaskID.generate(now: 1_700_000_000_000)
        let late = TaskID.generate(now: 1_700_000_000_001)
        #expect(TaskID.isWellFormed(early))
        #expect(early < late)
        #expect(Set((0..<1000).map { _ in TaskID.generate() }).count == 1000)
        #expect(!TaskID.isWellFormed("../../etc/passwd"))
        #expect(!TaskID.isWellFormed(early.uppercased()))
    }
}
