import Foundation
import OCIModel
import RegistryStore
import Testing
@testable import RegistryCore

/// A stored setting that no longer reads as its type fails closed (every read throws), and the
/// write that replaces it still works, so an operator can repair it through the API.
@Suite struct UnreadableSettingTests {
    @Test func readsFailClosedAndAReplacementRepairsThem() async throws {
        let r = try makeRegistry()
        for name in ["retention-policy", "quarantine-policy", "storage-quotas"] {
            try await r.metadata.setSettingDocument(name, Data(#"{"enabled": "#.utf8))
        }
        await #expect(throws: SettingUnreadable.self) { try await r.retentionPolicy() }
        await #expect(throws: SettingUnreadable.self) { try await r.quarantinePolicy() }
        await #expect(throws: SettingUnreadable.self) { try await r.quotas() }

        var retention = try await r.replacing(r.retentionPolicy, default: RetentionPolicy())
        #expect(retention == RetentionPolicy())
        retention.enabled = true
        try await r.updateRetention(retention)
        #expect(try await r.retentionPolicy().enabled)

        _ = try await r.updateQuarantine(QuarantinePolicy(enabled: true, grandfatherExisting: true), dryRun: false)
        #expect(try await r.quarantinePolicy().enabled)

        _ = try await r.createQuota(QuotaLimit(name: "team", prefix: "team/", limitBytes: 1024))
        #expect(try await r.quotas().map(\.name) == ["team"])

        // anything but an unreadable setting is not papered over
        await #expect(throws: RegistryError.self) {
            _ = try await r.replacing({ () async throws -> Int in throw RegistryError(.unsupported, "down") }, default: 0)
        }
    }
}
