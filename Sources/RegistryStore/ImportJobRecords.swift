import Foundation

/// An import job (issue 17, `POST /api/v1/imports`) as the metadata store keeps it, so that any
/// node of a cluster answers `GET /api/v1/imports/{id}` and a restart does not lose the job. The
/// job's progress is `document`, the feature's own JSON (the store does not read it).
public struct ImportJobRecord: Sendable, Equatable {
    public var id: String
    /// `kind:name` of the identity that started it.
    public var owner: String
    /// `REPOSITORY:TAG` in this registry: whoever may push there may follow the job.
    public var image: String
    /// `running`, `succeeded` or `failed`.
    public var state: String
    public var document: Data
    /// The node running it (its lease holder name), for a running job whose node stops.
    public var node: String
    public var createdAt: Date
    /// Last write: a running job is written at least every few seconds while it runs.
    public var updatedAt: Date

    public init(id: String, owner: String, image: String, state: String, document: Data, node: String, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.owner = owner
        self.image = image
        self.state = state
        self.document = document
        self.node = node
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public var running: Bool { state == "running" }
}

/// Import jobs, shared by every node. Writes append no event (the copy's own pushes do).
public protocol ImportJobStore: Sendable {
    /// Stores the job or replaces the stored one with the same id — unless the stored one has
    /// finished: a finished job is never written again (a late progress write of a slow node
    /// cannot turn it back into a running one). Answers whether it wrote.
    func saveImportJob(_ record: ImportJobRecord) async throws -> Bool
    func importJob(id: String) async throws -> ImportJobRecord?
    /// Removes finished jobs beyond the newest `keep` finished ones (by `createdAt`), and every job
    /// (running or not) last written before `staleBefore`; answers how many.
    func pruneImportJobs(keep: Int, staleBefore: Date) async throws -> Int
}
