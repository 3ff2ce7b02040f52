import ConsoleFeature
import ContentTrustFeature
import ReplicationFeature
import ScanningFeature
import TasksFeature

extension Serve {
    /// What the web console shows of other features: the composition root joins them, so the
    /// console imports none (tests/interop/test_architecture.py).
    static func consoleSeams(replication: ReplicationService, tasks: TasksFeature, scanning: ScanningFeature,
                             contentTrust: ContentTrustFeature) -> ConsoleSeams {
        let inventorier = scanning.inventorier
        return ConsoleSeams(
            replicas: {
                try await replication.statuses().map { s in
                    ConsoleReplica(location: s.replica.location, endpoint: s.replica.endpoint,
                                   regionEndpointEnabled: s.replica.regionEndpointEnabled, lagEvents: s.lagEvents,
                                   lagSeconds: s.lagSeconds, bytesPending: s.progress.bytesPending, lastError: s.progress.lastError,
                                   lastErrorAt: s.progress.lastErrorAt)
                }
            },
            runLog: { id, limit in try await tasks.runLogTail(id: id, limit: limit) },
            inventory: { digest in
                try await inventorier.summary(manifest: digest).map {
                    ConsoleInventory(status: $0.status, detail: $0.detail, os: $0.os, packagesByType: $0.packagesByType,
                                     createdAt: $0.createdAt)
                }
            },
            verifySignature: { repository, subject, signature, host in
                let check = await contentTrust.checkSignature(repository, subject: subject, signature: signature, host: host)
                return ConsoleSignatureCheck(verified: check.verified, signer: check.signer, detail: check.detail)
            },
            findings: { digest in
                guard let matcher = inventorier.matcher, let stored = try await matcher.store.findings(manifest: digest) else { return nil }
                return ConsoleFindings(advisoryVersion: stored.advisoryVersion, findings: stored.findings.map {
                    ConsoleFindings.Finding(id: $0.advisoryID, severity: $0.severity, package: $0.package,
                                            installedVersion: $0.installedVersion, fixedVersion: $0.fixedVersion)
                })
            },
            scans: { limit, may in
                try await scanning.scanSummaries(limit: limit, may: may).map { list in
                    ConsoleScanList(images: list.images.map {
                        ConsoleScanList.Image(repository: $0.repository, manifest: $0.manifest, tags: $0.tags,
                                              advisoryVersion: $0.advisoryVersion, matchedAt: $0.matchedAt, counts: $0.counts,
                                              total: $0.total)
                    }, truncated: list.truncated)
                }
            })
    }
}
