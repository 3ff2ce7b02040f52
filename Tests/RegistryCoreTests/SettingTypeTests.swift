import Foundation
import RegistryCore
import RegistryStore
import Testing

/// The settings a server reads, by name and type: what a document arriving from a peer region is
/// checked against before it is stored (issue 13 review: it was checked to be JSON only).
@Suite struct SettingTypeTests {
    struct Feature: Codable, Sendable { var enabled: Bool; var level: Int }
    struct Invalid: Error, CustomStringConvertible { var description: String }

    @Test func theCoresPoliciesReadAsTheirTypesAndNothingElseDoes() throws {
        let registry = try makeRegistry()
        let quotas = try JSONEncoder().encode([QuotaLimit(name: "team", prefix: "team/", limitBytes: 1 << 30)])
        #expect(registry.settingDocumentProblem("storage-quotas", quotas) == nil)
        // JSON, but not this build's type: a list where an object is read, an object where a list is
        for (name, document) in [("storage-quotas", #"{"limitBytes": 1}"#), ("quarantine-policy", "[1, 2]"),
                                 ("gc-policy", "not json"), ("retention-policy", "")] {
            let problem = try #require(registry.settingDocumentProblem(name, Data(document.utf8)))
            #expect(problem.contains("is not a valid \(name) for this build"))
        }
        // A name no part of this server reads (a feature it is composed without, a newer build's).
        let unknown = try #require(registry.settingDocumentProblem("content-trust", Data(#"{"enabled": true}"#.utf8)))
        #expect(unknown.contains("no part of this server reads a setting named content-trust"))
    }

    @Test func aFeatureDeclaresItsOwnSetting() throws {
        let registry = try makeRegistry()
        let key = SettingKey<Feature>("feature-policy")
        #expect(registry.settingDocumentProblem(key.name, Data(#"{"enabled": true, "level": 2}"#.utf8)) != nil)
        registry.registerSettingType(key)
        #expect(registry.settingDocumentProblem(key.name, Data(#"{"enabled": true, "level": 2}"#.utf8)) == nil)
        #expect(registry.settingDocumentProblem(key.name, Data(#"{"enabled": "yes"}"#.utf8)) != nil)
    }

    @Test func aFeaturesOwnRulesApplyToADocumentThatDecodes() throws {
        let registry = try makeRegistry()
        let key = SettingKey<Feature>("checked-policy")
        registry.registerSettingType(key) { value in
            if value.enabled && value.level < 1 { throw Invalid(description: "level must be at least 1 when enabled") }
        }
        #expect(registry.settingDocumentProblem(key.name, Data(#"{"enabled": true, "level": 2}"#.utf8)) == nil)
        #expect(registry.settingDocumentProblem(key.name, Data(#"{"enabled": false, "level": 0}"#.utf8)) == nil)
        let problem = try #require(registry.settingDocumentProblem(key.name, Data(#"{"enabled": true, "level": 0}"#.utf8)))
        #expect(problem.contains("level must be at least 1 when enabled"))
    }

    @Test func theCoresReplicatedPoliciesAreDeclared() throws {
        // The names the core declares; the features' (scan-policy, content-trust) are checked by
        // the feature tests that compose them.
        let registry = try makeRegistry()
        for name in ["quarantine-policy", "retention-policy", "soft-delete-policy", "gc-policy", "storage-quotas"] {
            let problem = registry.settingDocumentProblem(name, Data("{}".utf8)) ?? ""
            #expect(!problem.contains("no part of this server reads"), "\(name)")
        }
    }
}
