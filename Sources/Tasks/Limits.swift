/// Caps applied to task files, values files and Dockerfiles, which are someone else's code.
/// Each cap is far above what a real file needs and far below what would hurt the server.
public struct TaskLimits: Sendable, Equatable {
    /// Bytes of a task or values file.
    public var maxFileBytes = 64 * 1024
    /// Nesting of YAML collections, counted after alias expansion.
    public var maxDepth = 16
    /// YAML nodes (scalars and collections) after alias expansion: aliases are allowed, but
    /// a billion-laughs file is refused long before it is expanded.
    public var maxNodes = 10_000
    public var maxSteps = 100
    /// Characters one value may expand to.
    public var maxExpandedLength = 16 * 1024
    /// Characters all values of one file may expand to, together.
    public var maxTotalExpansion = 1024 * 1024
    /// Seconds; a step's `timeout` and the file's `stepTimeout` must lie in 1...maxTimeout.
    public var maxTimeout = 8 * 3600
    public var maxRetries = 10
    /// Bytes of a Dockerfile.
    public var maxDockerfileBytes = 1024 * 1024
    /// Stages of a Dockerfile.
    public var maxStages = 128

    public init() {}
    public static let `default` = TaskLimits()
}
