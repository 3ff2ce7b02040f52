import Access
import Foundation
import Logging
import RegistryCore
import RegistryStore
import UpstreamClient
@testable import ReplicationFeature

/// One region on the embedded default with its replication service and applier, for the tests
/// that drive the applier against a peer served in-process (outbound calls allowed to loopback).
struct ReplicationTestRegion {
    let registry: Registry
    let backend: any MetadataBackend
    let service: ReplicationService
    let applier: ReplicationApplier

    static func make(region: String = "sea") async throws -> ReplicationTestRegion {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: tempDataDir(), logger: logger)
        let backend = registry.metadata as! any MetadataBackend
        let key = try await ReplicationService.sharedSealingKey(SharedKeyMaterial(store: backend, kek: KeyEncryptionKey.generate()))
        let service = ReplicationService(store: backend, events: backend, sealingKey: key, policy: try OutboundPolicy(allow: "127.0.0.1/32"),
                                         logger: logger, region: region, content: backend, registers: backend, settings: backend)
        return ReplicationTestRegion(registry: registry, backend: backend, service: service,
                                     applier: ReplicationApplier(registry: registry, service: service, registers: backend, logger: logger))
    }
}
