import Hummingbird
import Logging
import NIOCore
import Prometheus

/// `run --metrics-port`: `/metrics` (the Prometheus text of `registry`) and `/healthz` (200 while
/// `isHealthy` says so, else 503 with the error object) on a small HTTP server of its own.
public enum MetricsEndpoint {
    public static func application(
        host: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger,
        isHealthy: @escaping @Sendable () -> Bool
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        router.get("/healthz") { _, _ in
            isHealthy()
                ? APIFront.text("ok\n")
                : APIFront.error(503, "unhealthy", "the worker has made no round trip with PostgreSQL lately")
        }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
    }
}
