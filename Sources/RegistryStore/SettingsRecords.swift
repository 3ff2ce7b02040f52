import Foundation

/// The name of a registry-wide setting and the type of its value. The store keeps values as JSON;
/// only this type decides how they read.
public struct SettingKey<Value: Codable & Sendable>: Sendable, Hashable {
    public let name: String
    public init(_ name: String) { self.name = name }
}

/// A stored setting that no longer reads as its type (written by another version, or damaged).
public struct SettingUnreadable: Error, CustomStringConvertible, Sendable {
    public let name: String
    public let reason: String
    public var description: String { "setting \(name) is unreadable: \(reason)" }
}

/// Registry-wide settings (policies, feature configuration). Writing one appends a `setting` event
/// naming it (its detail) and carrying the SHA-256 digest of the document written (its digest), so
/// every process holding it in a cache learns of the change from the event log, and a peer region
/// applies exactly the document the event names (issue 13: settings are registers).
public protocol SettingsStore: Sendable {
    /// The JSON document stored under `name`, or nil.
    func settingDocument(_ name: String) async throws -> Data?
    func setSettingDocument(_ name: String, _ document: Data) async throws
}

extension SettingsStore {
    public func setting<Value>(_ key: SettingKey<Value>) async throws -> Value? {
        guard let document = try await settingDocument(key.name) else { return nil }
        do {
            return try JSONDecoder().decode(Value.self, from: document)
        } catch {
            throw SettingUnreadable(name: key.name, reason: "\(error)")
        }
    }

    public func setSetting<Value>(_ key: SettingKey<Value>, _ value: Value) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try await setSettingDocument(key.name, try encoder.encode(value))
    }
}
