import Access
import Hummingbird
import NIOCore

/// Per-request context: the client's network origin travels with the request so access rules
/// can be decided once, in one place.
public struct BerthRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Who calls a management route, set by the management check before its handler runs.
    public var managementActor: Actor?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Test-only initialiser for contexts without a channel.
    public init(coreContext: CoreRequestContextStorage, remoteAddress: SocketAddress?) {
        self.coreContext = coreContext
        self.remoteAddress = remoteAddress
    }
}
