// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "upsert-worker",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "upsert-worker", targets: ["UpsertWorker"]),
        .executable(name: "upsert-bench", targets: ["UpsertBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // The HTTP front (`serve`): Hummingbird 2 without its optional traits, HMAC from
        // swift-crypto, metrics through swift-metrics with the Prometheus backend.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // Already under Hummingbird; named for NIOPosix (serve runs its tasks on NIO's event loops).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Already under Hummingbird; named for NIOHTTPTypes (the request deadline's handler).
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // libpq, the PostgreSQL C client library, from the Debian package libpq-dev.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // A JSON value with exact numbers, a strict bounded parser and a stable serializer.
        .target(name: "JSON"),
        // UUID and timestamp text in PostgreSQL's forms, fast: for the database layer and the
        // contact rules alike (so that the rules need no database module).
        .target(name: "TextForms"),
        // The thin PostgreSQL layer over libpq that JobQueue and ContactDomain share.
        .target(
            name: "Postgres",
            dependencies: [
                "CLibPQ", "JSON", "TextForms",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The schema: the SQL files of sql/, carried inside the binary.
        .target(name: "Migrations", dependencies: ["Postgres"]),
        // The generic PostgreSQL job queue: it knows job kinds and handlers, never contacts.
        .target(
            name: "JobQueue",
            dependencies: [
                "Postgres", "JSON", "TextForms",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The contact rules (plain values and functions) and their small SQL store.
        .target(
            name: "ContactDomain",
            dependencies: ["Postgres", "JSON", "TextForms", "JobQueue", .product(name: "Logging", package: "swift-log")]
        ),
        // The HTTP front: the public API's endpoint, job status, the WhatsApp Cloud API webhook,
        // health, metrics and the OpenAPI document, on top of the queue.
        .target(
            name: "HTTPFront",
            dependencies: [
                "Postgres", "JSON", "TextForms", "JobQueue", "ContactDomain", "Migrations",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What the programs share on the command line: the global and worker options, one-line
        // errors with their exit status, log formats.
        .target(
            name: "CommandLineSupport",
            dependencies: [
                "JSON", "Postgres", "JobQueue",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The command line: parses arguments and wires the libraries together.
        .executableTarget(
            name: "UpsertWorker",
            dependencies: [
                "Postgres", "JSON", "TextForms", "Migrations", "JobQueue", "ContactDomain", "CommandLineSupport", "HTTPFront",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The bench: a scratch database, a realistic workload, and the figures docs/performance.md
        // reports; a program of its own, beside the production binary.
        .executableTarget(
            name: "UpsertBench",
            dependencies: [
                "Postgres", "JSON", "JobQueue", "ContactDomain", "Migrations", "CommandLineSupport",
                "TestSupport",  // its seeded generator
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // A worker with test-only job kinds, run as a separate process by the queue's tests.
        .executableTarget(
            name: "TestWorker",
            dependencies: [
                "Postgres", "JSON", "JobQueue", "CommandLineSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // Helpers for the tests: scratch databases cloned from a migrated template.
        .target(
            name: "TestSupport",
            dependencies: ["Postgres", "Migrations", "JSON", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "Migrations", "JSON", "TextForms", "TestSupport"]),
        .testTarget(
            name: "JobQueueTests",
            dependencies: [
                "JobQueue", "Postgres", "JSON", "TestSupport", "Migrations", .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "HTTPFrontTests",
            dependencies: [
                "HTTPFront", "ContactDomain", "JobQueue", "Postgres", "JSON", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                // The request deadline's test runs the handler on virtual time.
                .product(name: "NIOEmbedded", package: "swift-nio"),
                // Callers on real event loops (HomeLoopsTests).
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            exclude: ["whatsapp"]
        ),
        .testTarget(
            name: "ContactDomainTests",
            dependencies: ["ContactDomain", "JobQueue", "Postgres", "JSON", "TextForms", "TestSupport"],
            exclude: ["metadata"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
