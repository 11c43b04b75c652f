// swift-tools-version:6.1
//
// sdq: asynchronous Stable Diffusion image generation on queues.
// Layout and dependency direction follow docs/DESIGN.md (docs/architecture.md follows one task through the code):
//   executables -> service libraries -> SDQPlatform -> SDQTransport -> SDQCore -> SDQMessages, SDQAWS.
// SDQStack (the embedded transport, opening either transport, the service runner) is linked by
// executables that run either transport; api-lambda links SDQAWSTransport alone, no HTTP server.
// A service library never imports another service library; only the `sdq` command composes them.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "sdq",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sdq", targets: ["SdqMain"]),
        .executable(name: "api-lambda", targets: ["ApiLambdaMain"]),
        .executable(name: "api", targets: ["ApiHTTPMain"]),
        .executable(name: "dispatcher", targets: ["DispatcherMain"]),
        .executable(name: "inference-service", targets: ["InferenceServiceMain"]),
        .executable(name: "result-writer", targets: ["ResultWriterMain"]),
        .executable(name: "bench-api-lambda", targets: ["ApiLambdaBenchmark"]),
        .executable(name: "bench-gpu-gap", targets: ["GPUGapBenchmark"]),
        .executable(name: "bench-dispatcher", targets: ["DispatcherBenchmark"]),
        .executable(name: "bench-model-affinity", targets: ["ModelAffinityBenchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        // Tests only: a clock the tests advance, so heartbeat and visibility deadlines need no sleeps.
        .package(url: "https://github.com/pointfreeco/swift-clocks.git", from: "1.1.1"),
    ],
    targets: [
        // MARK: Shared
        .target(
            name: "SDQMessages",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Shared/Messages",
            exclude: ["proto"],
            swiftSettings: swiftSettings
        ),
        // The domain: what a task is (record, document, kinds) and its lifecycle state machine.
        // No I/O and no transport: everything above it shares these types.
        .target(
            name: "SDQCore",
            dependencies: ["SDQMessages", "SDQAWS"],
            path: "Shared/Core",
            swiftSettings: swiftSettings
        ),
        // The transport protocols (queues, topics, objects, task store), the typed message
        // channels and their consumer, priority lanes and the stack's resource names: what a
        // service sees of a transport, never a concrete one.
        .target(
            name: "SDQTransport",
            dependencies: [
                "SDQCore", "SDQMessages", "SDQAWS",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Shared/Transport",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SDQAWS",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Shared/AWS",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SDQLambdaRuntime",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Shared/LambdaRuntime",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SDQPlatform",
            dependencies: [
                "SDQCore", "SDQTransport", "SDQMessages", "SDQAWS",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Shared/Platform",
            swiftSettings: swiftSettings
        ),
        // The AWS transport (SQS, SNS, S3, DynamoDB behind the transport protocols).
        .target(
            name: "SDQAWSTransport",
            dependencies: [
                "SDQPlatform", "SDQAWS", "SDQMessages",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Shared/AWSTransport",
            swiftSettings: swiftSettings
        ),
        // OpenTelemetry export and process logging: what executables set up at start. The
        // platform itself speaks only the swift-log, swift-metrics and swift-distributed-tracing
        // APIs, so it does not link the exporters.
        .target(
            name: "SDQTelemetry",
            dependencies: [
                "SDQAWS",  // UTCTime: log timestamps without the time-zone database
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            path: "Shared/Telemetry",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SDQStack",
            dependencies: [
                "SDQPlatform", "SDQAWSTransport", "SDQMessages", "SDQTelemetry",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/Stack",
            swiftSettings: swiftSettings
        ),

        // MARK: Services (library + thin executable each)
        .target(
            name: "ApiLambda",
            dependencies: [
                "SDQPlatform", "SDQLambdaRuntime", "SDQAWS",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            path: "Services/ApiLambda/Library",
            swiftSettings: swiftSettings
        ),
        // The API over plain HTTP (compose, ECS, EKS, `sdq up`): the same handler behind Hummingbird.
        .target(
            name: "ApiHTTP",
            dependencies: [
                "ApiLambda", "SDQPlatform",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Services/ApiLambda/HTTP",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ApiHTTPMain", dependencies: ["ApiHTTP", "SDQStack"],
            path: "Services/ApiLambda/HTTPExecutable", swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ApiLambdaBenchmark",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/ApiLambdaBenchmark", swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "GPUGapBenchmark",
            dependencies: ["Sdq", "ApiLambda", "SDQPlatform", "SDQStack", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/GPUGapBenchmark", swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ModelAffinityBenchmark",
            dependencies: [
                "ApiLambda", "Dispatcher", "InferenceService", "ResultWriter", "SDQPlatform", "SDQStack",
                .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/ModelAffinityBenchmark", swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DispatcherBenchmark",
            dependencies: ["Dispatcher", "SDQPlatform", "SDQStack", "SDQMessages", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/DispatcherBenchmark", swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ApiLambdaMain",
            dependencies: [
                "ApiLambda", "SDQAWSTransport", "SDQLambdaRuntime", "SDQTelemetry",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/ApiLambda/Executable", swiftSettings: swiftSettings,
            // A Lambda function starts often and is billed by memory: linked as a position-dependent
            // executable it skips the 130,000 relative relocations a PIE needs at every start (3 MB
            // of relocation entries read, the pages they patch copied); without exported symbols
            // its dynamic symbol table shrinks from 1 MB to 15 kB. Heap, stack, mmap and shared
            // libraries stay randomized. BENCHMARKS.md has the figures.
            linkerSettings: [.unsafeFlags(["-Xclang-linker", "-no-pie", "-Xlinker", "--no-export-dynamic"], .when(platforms: [.linux]))]
        ),
        .target(
            name: "Dispatcher", dependencies: ["SDQPlatform", .product(name: "Tracing", package: "swift-distributed-tracing")],
            path: "Services/Dispatcher/Library", swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DispatcherMain", dependencies: ["Dispatcher", "SDQStack"],
            path: "Services/Dispatcher/Executable", swiftSettings: swiftSettings
        ),
        .target(
            name: "InferenceService",
            dependencies: [
                "SDQPlatform",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            path: "Services/InferenceService/Library",
            swiftSettings: swiftSettings
        ),
        // The emulator's HTTP server (`sdq emulate-runtime`: an A1111- and ComfyUI-compatible peer
        // for development and tests); production executables do not link it.
        .target(
            name: "EmulatorServer",
            dependencies: [
                "InferenceService", "SDQPlatform",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            path: "Services/InferenceService/EmulatorServer",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "InferenceServiceMain", dependencies: ["InferenceService", "SDQStack"],
            path: "Services/InferenceService/Executable", swiftSettings: swiftSettings
        ),
        .target(
            name: "ResultWriter",
            dependencies: [
                "SDQPlatform", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            path: "Services/ResultWriter/Library", swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ResultWriterMain", dependencies: ["ResultWriter", "SDQStack"],
            path: "Services/ResultWriter/Executable", swiftSettings: swiftSettings
        ),
        .target(
            name: "Sdq",
            dependencies: [
                "SDQPlatform", "SDQAWSTransport", "SDQStack", "SDQTelemetry", "ApiLambda", "ApiHTTP", "Dispatcher", "InferenceService",
                "EmulatorServer", "ResultWriter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "Services/Sdq/Library",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "SdqMain", dependencies: ["Sdq"],
            path: "Services/Sdq/Executable", swiftSettings: swiftSettings
        ),

        // MARK: Fuzzing (libFuzzer; scripts/fuzz.sh builds them with -sanitize=fuzzer -DFUZZING,
        // a normal build makes them replay the files given as arguments)
        .target(name: "FuzzSupport", path: "Fuzz/FuzzSupport", swiftSettings: swiftSettings),
        .executableTarget(
            name: "FuzzAPIRequest", dependencies: ["ApiLambda", "SDQPlatform", "SDQStack", "FuzzSupport"], path: "Fuzz/FuzzAPIRequest",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzLambdaEvent", dependencies: ["ApiLambda", "FuzzSupport"], path: "Fuzz/FuzzLambdaEvent",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzQueueMessage", dependencies: ["SDQPlatform", "SDQMessages", "FuzzSupport"], path: "Fuzz/FuzzQueueMessage",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests (one target per library target)
        .target(
            name: "SDQTestSupport",
            dependencies: [
                "SDQPlatform", "SDQStack", "SDQAWS", "SDQAWSTransport", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/Support", exclude: ["webhook_receiver.py", "otlp_receiver.py", "loopback_server.py"], swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SDQAWSTests",
            dependencies: [
                "SDQAWS", "SDQTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/SDQAWSTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SDQMessagesTests",
            dependencies: ["SDQMessages", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Tests/SDQMessagesTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SDQPlatformTests",
            dependencies: [
                "SDQPlatform", "SDQAWSTransport", "SDQStack", "SDQTestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "Yams", package: "Yams"),
                .product(name: "Clocks", package: "swift-clocks"), .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "Tests/SDQPlatformTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ApiLambdaTests",
            dependencies: [
                "ApiLambda", "ApiHTTP", "SDQStack", "SDQTestSupport", "SDQLambdaRuntime", "SDQAWS", "SDQAWSTransport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/ApiLambdaTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DispatcherTests", dependencies: ["Dispatcher", "SDQStack", "SDQTestSupport"],
            path: "Tests/DispatcherTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InferenceServiceTests",
            dependencies: [
                "InferenceService", "EmulatorServer", "SDQStack", "SDQTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Clocks", package: "swift-clocks"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            path: "Tests/InferenceServiceTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ResultWriterTests", dependencies: ["ResultWriter", "SDQStack", "SDQTestSupport"],
            path: "Tests/ResultWriterTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SdqTests",
            dependencies: [
                "Sdq", "SDQStack", "ApiHTTP", "EmulatorServer", "SDQTestSupport", "SDQAWS", "SDQAWSTransport", "SDQTelemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Tests/SdqTests", swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
