import Foundation

/// Key material every node of a registry shares (token signing keys, the webhook sealing key),
/// kept by name as an opaque blob. Callers store it sealed under a key-encryption key that never
/// enters the store; the store only keeps bytes and a version.
public protocol KeyMaterialStore: Sendable {
    /// The blob stored under `name` and its version (1 after the first write), or nil.
    func keyMaterial(named name: String) async throws -> (version: Int64, blob: Data)?
    /// Compare-and-swap: stores `blob` under `name` when its stored version is `expectedVersion`
    /// (0: nothing stored yet) and answers true; answers false, changing nothing, otherwise.
    /// Of two writers from the same version exactly one wins.
    func storeKeyMaterial(named name: String, _ blob: Data, expectedVersion: Int64) async throws -> Bool
    /// The names stored that begin with `prefix` (byte-wise), in byte order.
    func keyMaterialNames(prefix: String) async throws -> [String]
    /// Removes what is stored under `name`; false when nothing was. For material that is retired
    /// for good (a rotated key's old period): its name is not written again.
    func deleteKeyMaterial(named name: String) async throws -> Bool
}
